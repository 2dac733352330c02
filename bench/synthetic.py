"""CLIP-like synthetic vectors: structure that makes approximate search realistically hard.

Real CLIP embeddings share a large common direction, have a fast-decaying spectrum and
form clusters; text embeddings sit in a cone offset from image embeddings (the
"modality gap"). Uniform random vectors have none of this and flatter every index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipLikeSpace:
    dim: int
    clusters: int = 256
    seed: int = 0

    def _parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        spectrum = 1.0 / np.sqrt(1.0 + np.arange(self.dim))
        centres = rng.standard_normal((self.clusters, self.dim)) * spectrum
        mean = rng.standard_normal(self.dim) * spectrum * 2
        gap = rng.standard_normal(self.dim) * spectrum * 0.8
        return spectrum, centres, mean, gap

    def images(self, n: int, seed: int) -> np.ndarray:
        """Collection vectors (and held-out image-like queries with another seed)."""
        spectrum, centres, mean, _ = self._parts()
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, self.clusters, n)
        x = mean + centres[labels] + 0.5 * rng.standard_normal((n, self.dim)) * spectrum
        return _unit(x)

    def texts(self, n: int, seed: int) -> np.ndarray:
        """Text-like queries: image-like ones shifted across the modality gap, noisier."""
        spectrum, _, _, gap = self._parts()
        rng = np.random.default_rng(seed)
        base = self.images(n, seed)
        return _unit(base + gap + 0.3 * rng.standard_normal((n, self.dim)) * spectrum)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
