"""The CLIP encoder shared by the indexer and the server: images and texts to unit vectors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import open_clip
import torch
from PIL import Image

from clipsearch.encoder.device import precision_for, select_device
from clipsearch.encoder.images import DEFAULT_MAX_PIXELS, decode_for_model, to_rgb
from clipsearch.encoder.spec import EncoderInfo
from clipsearch.encoder.text_prefix import encode_text_prefix, supports_prefix
from clipsearch.encoder.tokenizer import get_tokenizer
from clipsearch.encoder.weights import ResolvedWeights, resolve_weights
from clipsearch.errors import ClipsearchError
from clipsearch.models import ModelSpec, PreprocessConfig

log = logging.getLogger(__name__)

_CONFIG_DIR = Path(__file__).parent / "model_configs"
DEFAULT_BATCH_SIZE = 32
RANDOM_INIT_SEED = 0
_FP32_PARAMETERS = ("logit_scale", "logit_bias")

ImageInput = Image.Image | bytes
T = TypeVar("T")


class ClipModel(Protocol):
    """The part of an OpenCLIP model the encoder uses."""

    def encode_image(self, image: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, text: torch.Tensor) -> torch.Tensor: ...


class ModelLoadError(ClipsearchError, RuntimeError):
    """The weights were found but could not be loaded into the model."""


def register_model_configs() -> None:
    """Make clipsearch's own architectures (e.g. `clipsearch-tiny`) known to OpenCLIP."""
    if "clipsearch-tiny" not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def load_encoder(
    spec: ModelSpec | None = None,
    allow_download: bool = True,
    precision: torch.dtype | None = None,
) -> ClipEncoder:
    """Load the model `spec` names, with its own preprocessing, on the best device.

    The weights are held in `precision`, by default the device's (`precision_for`).
    """
    spec = spec or ModelSpec()
    register_model_configs()
    resolved = resolve_weights(spec, allow_download=allow_download)
    device = select_device(spec.device)
    model, preprocess, dim, preprocess_cfg = _build_model(resolved, device)
    dtype = precision or precision_for(device.type)
    if dtype != torch.float32:
        _cast_weights(model, dtype)
    tokenizer = get_tokenizer(resolved.model_name)
    from_hub = spec.pretrained.startswith("hf-hub:")
    info = EncoderInfo(
        model=spec.pretrained if from_hub else spec.model,
        pretrained="" if from_hub else spec.pretrained,
        dim=dim,
        preprocess=preprocess_cfg,
        device=str(device),
        weights=resolved.description,
        context_length=int(tokenizer.context_length),
    )
    log.info("loaded %s on %s in %s (dim %d)", info.weights, info.device, dtype, info.dim)
    return ClipEncoder(model, preprocess, tokenizer, info, device, dtype=dtype)


def _build_model(
    resolved: ResolvedWeights, device: torch.device
) -> tuple[ClipModel, Callable[[Image.Image], torch.Tensor], int, PreprocessConfig]:
    """The model in eval mode, its inference transform, its dim and its preprocessing."""
    pre = resolved.preprocess
    try:
        # Random init is seeded so separate processes (indexer, server) get the same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(
                resolved.model_name,
                pretrained=str(resolved.checkpoint) if resolved.checkpoint else None,
                device=device,
                precision="fp32",
                image_mean=pre.mean,
                image_std=pre.std,
                image_interpolation=pre.interpolation,
                image_resize_mode=pre.resize_mode,
            )
    except (RuntimeError, ValueError, OSError, KeyError) as err:
        raise ModelLoadError(
            f"could not load {resolved.description}: {str(err).splitlines()[0]}"
        ) from err
    model.eval()
    dim = int(model.visual.output_dim)
    return model, preprocess, dim, _preprocess_config(model.visual.preprocess_cfg)


def _cast_weights(model: ClipModel, dtype: torch.dtype) -> None:
    """Hold every weight in `dtype`, except the learned temperature: rounded, it would
    shift zero-shot probabilities (exp(logit_scale) = 100 becomes 100.03 in fp16, 98.9
    in bf16)."""
    assert isinstance(model, torch.nn.Module)
    kept = {
        name: param.detach().clone()
        for name, param in model.named_parameters(recurse=False)
        if name in _FP32_PARAMETERS
    }
    model.to(dtype)
    for name, value in kept.items():
        getattr(model, name).data = value


def _preprocess_config(cfg: dict[str, Sequence[float] | int | str]) -> PreprocessConfig:
    size, mean, std = cfg["size"], cfg["mean"], cfg["std"]
    assert not isinstance(mean, int | str) and not isinstance(std, int | str)
    height, width = (size, size) if isinstance(size, int) else tuple(map(int, size))
    return PreprocessConfig(
        size=(int(height), int(width)),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        interpolation=str(cfg["interpolation"]),
        resize_mode=str(cfg["resize_mode"]),
        fill_color=int(cfg.get("fill_color", 0)),  # type: ignore[arg-type]
    )


class ClipEncoder:
    """Encodes batches of images and texts into L2-normalised float32 vectors.

    The towers run in the dtype their weights are held in (`dtype`: half precision on
    CUDA, fp32 on CPU); inputs are cast to it on the device. The preprocessing is
    the one OpenCLIP's pretrained config assigns to the loaded weights. Text batches are
    cut to their longest real token sequence where that is exact (`trim_text`).
    """

    def __init__(
        self,
        model: ClipModel,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        info: EncoderInfo,
        device: torch.device,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model = model
        self.transform = preprocess
        self.tokenizer = tokenizer
        self.info = info
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype
        self.trim_text = supports_prefix(model)

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def logit_scale(self) -> float:
        """The model's learned temperature for zero-shot logits (100 for trained CLIP)."""
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.detach().exp()) if isinstance(scale, torch.Tensor) else 100.0

    @property
    def input_side(self) -> int:
        """The model input's longer side: images need at least this many pixels on their
        shorter side for the preprocessing's resize to lose nothing."""
        return max(self.info.preprocess.size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An RGB image to the model's input tensor (C, H, W); pure CPU work, thread-safe."""
        return self.transform(to_rgb(image))

    def preprocess_input(
        self, item: ImageInput, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> torch.Tensor:
        if isinstance(item, bytes):
            item = decode_for_model(item, self.input_side, source, max_pixels).image
        return self.preprocess(item)

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Preprocessed image tensors (N, C, H, W) to unit vectors (N, dim)."""
        return self.start_pixels(pixels).result()

    def start_pixels(self, pixels: torch.Tensor) -> PendingVectors:
        """`encode_pixels`, returning as soon as the work is queued on a CUDA device, so
        the caller can prepare the next batch meanwhile (on CPU it is done on return)."""
        if pixels.shape[0] == 0:
            return PendingVectors(torch.empty(0, self.dim))
        with torch.inference_mode():
            features = self.model.encode_image(self._to_device(pixels).to(self.dtype))
            return _pending_unit_rows(features)

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """PIL images or encoded bytes to unit vectors; bad bytes raise ImageDecodeError."""
        parts = [
            self.encode_pixels(torch.stack([self.preprocess_input(item) for item in batch]))
            for batch in _batches(images, self.batch_size)
        ]
        return np.concatenate(parts) if parts else self._empty()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """Token ids (N, context_length) to unit vectors (N, dim)."""
        return self.start_tokens(tokens).result()

    def start_tokens(self, tokens: torch.Tensor) -> PendingVectors:
        """`encode_tokens`, returning as soon as the work is queued (see `start_pixels`)."""
        if tokens.shape[0] == 0:
            return PendingVectors(torch.empty(0, self.dim))
        tokens = self._to_device(tokens)
        with torch.inference_mode():
            if self.trim_text:
                features = encode_text_prefix(self.model, tokens)
            else:
                features = self.model.encode_text(tokens)
            return _pending_unit_rows(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        parts = [self.encode_tokens(self.tokenize(b)) for b in _batches(texts, self.batch_size)]
        return np.concatenate(parts) if parts else self._empty()

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """A host batch onto the device; from pinned memory the copy is asynchronous, so
        the kernels that follow are queued while it runs (the embed loader pins already)."""
        if self.device.type == "cuda" and batch.device.type == "cpu":
            batch = batch.pin_memory()  # returns the batch itself when it is pinned already
        return batch.to(self.device, non_blocking=True)

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.dim), dtype=np.float32)


class PendingVectors:
    """Unit vectors on their way to the host; `result()` waits for them."""

    def __init__(self, rows: torch.Tensor, ready: torch.cuda.Event | None = None) -> None:
        self._rows = rows
        self._ready = ready

    def result(self) -> np.ndarray:
        if self._ready is not None:
            self._ready.synchronize()
        return self._rows.numpy().astype(np.float32, copy=False)


def _pending_unit_rows(features: torch.Tensor) -> PendingVectors:
    rows = torch.nn.functional.normalize(features.float(), dim=-1)
    if rows.device.type != "cuda":
        return PendingVectors(rows)
    # Into pinned memory, so the copy back is queued too instead of waiting for the GPU.
    host = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True)
    host.copy_(rows, non_blocking=True)
    ready = torch.cuda.Event()  # type: ignore[no-untyped-call]
    ready.record(torch.cuda.current_stream(rows.device))
    return PendingVectors(host, ready)


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
