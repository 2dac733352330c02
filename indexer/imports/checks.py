"""Checks of imported vectors, pure functions of arrays: what is refused, what is fixed.

Refused, naming the file and row: NaN or infinite values, and all-zero image vectors
(no direction to search by). Fixed: vectors that are not unit length are normalised,
and the job warns with how far off they were. clip-retrieval writes unit vectors in
float16, whose norms are within ~1e-3 of 1, so only larger deviations are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipsearch.indexer.imports.base import ImportSourceError

NORM_TOLERANCE = 1e-2


@dataclass(frozen=True)
class NormStats:
    """How far from unit length the vectors checked so far were."""

    checked: int = 0
    off: int = 0  # rows whose norm is more than NORM_TOLERANCE from 1
    lowest: float = np.inf  # the extreme norms of those rows
    highest: float = 0.0

    def add(self, norms: np.ndarray) -> NormStats:
        off = norms[np.abs(norms - 1.0) > NORM_TOLERANCE]
        if not len(off):
            return NormStats(self.checked + len(norms), self.off, self.lowest, self.highest)
        return NormStats(
            self.checked + len(norms),
            self.off + len(off),
            min(self.lowest, float(off.min())),
            max(self.highest, float(off.max())),
        )

    def describe(self) -> str | None:
        """The warning to give, or None when every vector was unit length."""
        if not self.off:
            return None
        return (
            f"{self.off:,} of {self.checked:,} vectors were not unit length (norms from "
            f"{self.lowest:.4g} to {self.highest:.4g}); they were normalised, as search "
            "by cosine similarity needs"
        )


def check_rows(
    vectors: np.ndarray, present: np.ndarray, label: str, start: int, what: str
) -> np.ndarray:
    """The norms of the present rows; refuses rows with non-finite values, or (for image
    vectors, what="embedding") all zeros."""
    finite = np.isfinite(vectors).all(axis=1)
    bad = np.flatnonzero(present & ~finite)
    if len(bad):
        raise ImportSourceError(
            f"{label} row {start + int(bad[0])}: the {what} holds NaN or infinite values"
            f"{_more(bad, start, len(vectors))}",
            hint="fix or drop those rows in the source; clipsearch cannot search by them",
        )
    norms: np.ndarray = np.linalg.norm(vectors, axis=1)
    if what == "embedding":
        zero = np.flatnonzero(present & (norms == 0))
        if len(zero):
            raise ImportSourceError(
                f"{label} row {start + int(zero[0])}: the embedding is all zeros"
                f"{_more(zero, start, len(vectors))}",
                hint="a zero vector has no direction to search by: drop those rows",
            )
    found: np.ndarray = norms[present & (norms > 0)]
    return found


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows (captions without a vector) stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit


def _more(bad: np.ndarray, start: int, rows: int) -> str:
    if len(bad) == 1:
        return ""
    return f" (and {len(bad) - 1} more rows among rows {start}-{start + rows - 1})"
