"""Which CLIP models clipsearch knows, what a user asks to load, and the embedding space a
model's vectors live in. Plain data, no torch: the client, the formats and the CLI use it."""

from __future__ import annotations

from collections.abc import Mapping
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

    @staticmethod
    def from_dict(raw: Mapping[str, object]) -> PreprocessConfig:
        """As written by to_dict into JSON (lists where the fields are tuples)."""
        try:
            size = tuple(int(v) for v in raw["size"])  # type: ignore[attr-defined]
            return PreprocessConfig(
                size=(size[0], size[1]),
                mean=tuple(float(v) for v in raw["mean"]),  # type: ignore[attr-defined]
                std=tuple(float(v) for v in raw["std"]),  # type: ignore[attr-defined]
                interpolation=str(raw["interpolation"]),
                resize_mode=str(raw["resize_mode"]),
                fill_color=int(raw.get("fill_color", 0)),  # type: ignore[call-overload]
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"not a preprocessing config: {dict(raw)}") from err


def preprocess_from_json(raw: Mapping[str, object] | None) -> PreprocessConfig | None:
    """A manifest's preprocessing; empty or absent means unknown (vectors made elsewhere)."""
    return PreprocessConfig.from_dict(raw) if raw else None


@dataclass(frozen=True)
class EmbeddingSpace:
    """Where a model's vectors live. Vectors of two spaces cannot be compared, so shards,
    indexes and the server's model must all agree on it: this is the one check."""

    model: str
    pretrained: str
    dim: int
    preprocess: PreprocessConfig | None  # None: not known (vectors made elsewhere)

    def describe(self) -> str:
        return f"{self.model}/{self.pretrained or '-'} ({self.dim}-d)"

    def mismatch(self, other: EmbeddingSpace) -> str | None:
        """Why vectors of `other` cannot be used with vectors of this space ("THIS vs
        OTHER"), or None when they can."""
        if (self.model, self.pretrained, self.dim) != (other.model, other.pretrained, other.dim):
            return f"{self.describe()} vs {other.describe()}"
        if self.preprocess != other.preprocess:
            return (
                f"{self.describe()} preprocessed two ways: "
                f"{_preprocess_text(self.preprocess)} vs {_preprocess_text(other.preprocess)}"
            )
        return None


def _preprocess_text(config: PreprocessConfig | None) -> str:
    if config is None:
        return "unknown"
    return f"{config.size[0]}x{config.size[1]} {config.resize_mode} mean={list(config.mean)}"
