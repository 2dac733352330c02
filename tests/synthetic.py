"""Structured unit vectors for index tests."""

from __future__ import annotations

import numpy as np

from bench.synthetic import ClipLikeSpace


def clustered_vectors(n: int, dim: int, clusters: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors with structure: a shared mean direction, a decaying spectrum, clusters."""
    return ClipLikeSpace(dim, clusters, seed).images(n, seed)
