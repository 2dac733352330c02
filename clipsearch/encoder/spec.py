"""Typed descriptions of which CLIP model to load and how it preprocesses images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "laion2b_s32b_b82k"

Device = Literal["auto", "cpu", "cuda"] | str


@dataclass(frozen=True)
class SeedModel:
    """A model clipsearch is built and documented for."""

    model: str
    pretrained: str
    imagenet_top1: float


SEED_MODELS: tuple[SeedModel, ...] = (
    SeedModel("ViT-L-14", "laion2b_s32b_b82k", 0.753),
    SeedModel("ViT-g-14", "laion2b_s34b_b88k", 0.784),
)


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: `--model`, `--pretrained`, `--preprocess-tag`, `--device`.

    `pretrained` is a pretrained tag of `model`, an `hf-hub:ORG/REPO` id, a local
    checkpoint file, or `none` for random weights. `preprocess_tag` names the tag whose
    preprocessing a local checkpoint should use (its weights came from that tag).
    """

    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    preprocess_tag: str | None = None
    device: Device = "auto"


@dataclass(frozen=True)
class PreprocessOverrides:
    """Preprocessing that differs from the architecture's defaults (from a pretrained config)."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    resize_mode: str | None = None


@dataclass(frozen=True)
class PreprocessConfig:
    """The preprocessing an encoder applies; stored with every embedding it writes."""

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize_mode: str
    fill_color: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class EncoderInfo:
    """What a loaded encoder is; written into shard and index metadata."""

    model: str
    pretrained: str
    dim: int
    preprocess: PreprocessConfig
    device: str
    weights: str
    context_length: int
