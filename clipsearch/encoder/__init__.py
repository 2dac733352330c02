"""The CLIP encoder: one model, its preprocessing, images and texts to unit vectors."""

from clipsearch.encoder.device import select_device
from clipsearch.encoder.encoder import (
    ClipEncoder,
    ModelLoadError,
    PendingVectors,
    load_encoder,
    register_model_configs,
)
from clipsearch.encoder.images import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    DecodeFailure,
    ImageDecodeError,
    decode_for_model,
    decode_image,
    read_image,
)
from clipsearch.encoder.spec import EncoderInfo
from clipsearch.encoder.weights import (
    UnknownModelError,
    WeightsUnavailableError,
    resolve_weights,
    tag_preprocess,
)
from clipsearch.models import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    SEED_MODELS,
    ModelSpec,
    PreprocessConfig,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "SEED_MODELS",
    "ClipEncoder",
    "DecodeFailure",
    "DecodedImage",
    "EncoderInfo",
    "ImageDecodeError",
    "ModelLoadError",
    "ModelSpec",
    "PendingVectors",
    "PreprocessConfig",
    "UnknownModelError",
    "WeightsUnavailableError",
    "decode_for_model",
    "decode_image",
    "load_encoder",
    "read_image",
    "register_model_configs",
    "resolve_weights",
    "select_device",
    "tag_preprocess",
]
