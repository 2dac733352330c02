"""A FAISS index over rows of float16 vectors on disk, searched with per-call settings and
re-ranked exactly. A version has one for its images and, with captions, one for those."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

EXACT_CHUNK_ROWS = 65_536  # rows scored at once by search_rows: bounds its memory


@dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # (queries, k) inner products, best first
    rows: np.ndarray  # (queries, k) row numbers, -1 where fewer than k results exist


@dataclass(frozen=True, eq=False)
class RowSet:
    """The rows a search may return (those a filter lets through), in the forms a search
    needs: the row numbers for an exact scan, a bitmap for FAISS's ID selector."""

    rows: np.ndarray  # sorted row numbers
    bits: np.ndarray  # one bit per row, little-endian bit order (IDSelectorBitmap's)
    size: int  # rows in the version

    @staticmethod
    def of(mask: np.ndarray) -> RowSet:
        return RowSet(np.flatnonzero(mask), np.packbits(mask, bitorder="little"), len(mask))

    def __len__(self) -> int:
        return len(self.rows)


class VectorIndex:
    """`index` holds rows of `vectors` (its ids are row numbers). Immutable: search
    settings are passed per call, never set on the shared index."""

    def __init__(
        self,
        index: faiss.Index,
        vectors: np.ndarray,
        default_nprobe: int,
        rerank_candidates: int,
    ) -> None:
        self.index = index
        self.vectors = vectors  # (rows, dim) float16, memory-mapped
        self.default_nprobe = default_nprobe
        self.rerank_candidates = rerank_candidates  # 0: results come straight from the index
        self.ivf = ivf_of(index)

    @property
    def count(self) -> int:
        """Rows the index holds (removed ones excluded)."""
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        """Its inverted lists; 0 for an exhaustive index."""
        return int(self.ivf.nlist) if self.ivf is not None else 0

    def search(
        self,
        queries: np.ndarray,
        k: int,
        nprobe: int | None = None,
        candidates: int | None = None,
        allowed: RowSet | None = None,
    ) -> SearchResult:
        """Top-k rows by inner product. `nprobe` and `candidates` (how many the index
        proposes for exact re-ranking) override the build's defaults for this call only;
        `allowed` limits the search to those rows (FAISS skips the others as it scans)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        rerank = self.rerank_candidates > 0
        fetch = max(k, (candidates or self.rerank_candidates) if rerank else k)
        params: faiss.SearchParameters | None = None
        if self.ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe or self.default_nprobe
        if allowed is not None:
            params = params or faiss.SearchParameters()
            # The selector reads the bitmap in place: `allowed` keeps it alive meanwhile.
            params.sel = faiss.IDSelectorBitmap(allowed.size, faiss.swig_ptr(allowed.bits))
        scores, rows = self.index.search(
            queries, min(fetch, max(1, len(self.vectors))), params=params
        )
        if rerank:
            scores, rows = self._rerank(queries, rows, k)
        return _top_k(scores, rows, k)

    def search_rows(self, queries: np.ndarray, k: int, allowed: RowSet) -> SearchResult:
        """Exact top-k among `allowed` rows, by their stored vectors: for filters that let
        few rows through, a scan of just those is exact and cheaper than the index."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(queries), max(k, 1)), -np.inf, dtype=np.float32)
        rows = np.full(scores.shape, -1, dtype=np.int64)
        for start in range(0, len(allowed.rows), EXACT_CHUNK_ROWS):
            chunk = allowed.rows[start : start + EXACT_CHUNK_ROWS]
            found_scores, found = _scan_fp16(self.vectors[chunk], queries, min(k, len(chunk)))
            both_scores = np.concatenate([scores, found_scores], axis=1)
            both_rows = np.concatenate([rows, np.where(found >= 0, chunk[found], -1)], axis=1)
            keep = np.argsort(-both_scores, axis=1, kind="stable")[:, : scores.shape[1]]
            scores = np.take_along_axis(both_scores, keep, axis=1)
            rows = np.take_along_axis(both_rows, keep, axis=1)
        return _top_k(scores, rows, k)

    def _rerank(
        self, queries: np.ndarray, proposed: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top k of each query's candidates by exact inner product with their float16
        vectors. Scored by FAISS's fp16 scan, one query's candidates at a time: numpy's
        float16 to float32 conversion cost 6x the rest of a re-rank (400 candidates of 768:
        4.9 ms a query against 0.95), which made deep re-ranking unaffordable."""
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for i, candidates in enumerate(proposed):
            # Sorted reads turn the random page faults of a memory map into a forward scan.
            unique = np.unique(candidates[candidates >= 0])
            if len(unique) == 0:
                continue
            top = min(k, len(unique))
            # np.take copies rows 2.5x faster than a memory map's fancy indexing.
            rows_f16 = np.take(self.vectors, unique, axis=0)
            found_scores, found = _scan_fp16(rows_f16, queries[i : i + 1], top)
            scores[i, :top], rows[i, :top] = found_scores[0], unique[found[0]]
        return scores, rows


def _scan_fp16(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner products of float16 rows with the queries, top k. FAISS's fp16 scalar
    quantizer stores exactly these bytes as its codes, so it scans them as they are,
    converting with SIMD: about 8x faster than numpy's float16 to float32 (measured on
    1,000 rows of 768: 0.35 ms against 2.95)."""
    rows = np.ascontiguousarray(vectors, dtype=np.float16)
    scan = faiss.IndexScalarQuantizer(
        rows.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    faiss.copy_array_to_vector(rows.view(np.uint8).ravel(), scan.codes)
    scan.ntotal = len(rows)
    scores, found = scan.search(queries, k)
    return scores, found


def _top_k(scores: np.ndarray, rows: np.ndarray, k: int) -> SearchResult:
    scores = np.where(rows >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_rows = np.take_along_axis(rows, order, axis=1)
    top_rows = np.where(np.isfinite(top_scores), top_rows, -1)
    return SearchResult(top_scores.astype(np.float32), top_rows)


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF inside `index` (under any pre-transform), or None for an exhaustive index."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
