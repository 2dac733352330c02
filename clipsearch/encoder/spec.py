"""What a loaded encoder is, and preprocessing a pretrained config overrides."""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch.models import EmbeddingSpace, PreprocessConfig


@dataclass(frozen=True)
class PreprocessOverrides:
    """Preprocessing that differs from the architecture's defaults (from a pretrained config)."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    resize_mode: str | None = None


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

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(self.model, self.pretrained, self.dim, self.preprocess)
