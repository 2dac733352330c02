"""One published index version, loaded: verified, memory-mapped, searchable."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from clipsearch.checksum import file_sha256
from clipsearch.errors import ClipsearchError
from clipsearch.index.fields import read_fields
from clipsearch.index.manifest import (
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    REMOVED,
    VECTORS_FILE,
    IndexManifest,
)
from clipsearch.index.records import RecordStore

EXACT_CHUNK_ROWS = 65_536  # rows scored at once by search_rows: bounds its memory


class IndexLoadError(ClipsearchError):
    """A version that is missing, corrupt or inconsistent, and must not be served."""


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


class IndexVersion:
    """A loaded version. Immutable once opened: search settings are passed per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.manifest = IndexManifest.from_json((path / MANIFEST_FILE).read_text())
            _verify_files(path, self.manifest.files)
            flags = faiss.IO_FLAG_ONDISK_SAME_DIR if self.manifest.on_disk else 0
            self.index = faiss.read_index(str(path / INDEX_FILE), flags)
            self.ids = np.load(path / IDS_FILE, mmap_mode="r")
            self.vectors = np.load(path / VECTORS_FILE, mmap_mode="r")
            self.records = RecordStore(path)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise IndexLoadError(f"{path}: cannot load this index version: {err}") from err
        self._check()
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids = np.asarray(self.ids)[order]
        self._sorted_rows = order
        self.ivf = ivf_of(self.index)

    @property
    def name(self) -> str:
        return self.manifest.version

    @cached_property
    def fields(self) -> pa.Table:
        """The rows' filterable fields, read when a filter first needs them."""
        return read_fields(self.path, rows=self.manifest.rows)

    def _check(self) -> None:
        m, rows = self.manifest, self.manifest.rows
        problems = []
        if self.index.ntotal != m.count:
            problems.append(f"index holds {self.index.ntotal} vectors, manifest says {m.count}")
        if self.index.d != m.dim:
            problems.append(f"index has dim {self.index.d}, manifest says {m.dim}")
        if self.ids.shape != (rows,):
            problems.append(f"ids.npy has shape {self.ids.shape}, expected ({rows},)")
        if self.vectors.shape != (rows, m.dim):
            problems.append(
                f"vectors.npy has shape {self.vectors.shape}, expected ({rows}, {m.dim})"
            )
        if len(self.records) != rows:
            problems.append(f"records hold {len(self.records)} rows, expected {rows}")
        if problems:
            raise IndexLoadError(f"{self.path}: inconsistent index version: " + "; ".join(problems))

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
        rerank = self.manifest.rerank_candidates > 0
        fetch = max(k, (candidates or self.manifest.rerank_candidates) if rerank else k)
        params: faiss.SearchParameters | None = None
        if self.ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe or self.manifest.default_nprobe
        if allowed is not None:
            params = params or faiss.SearchParameters()
            # The selector reads the bitmap in place: `allowed` keeps it alive meanwhile.
            params.sel = faiss.IDSelectorBitmap(allowed.size, faiss.swig_ptr(allowed.bits))
        scores, rows = self.index.search(
            queries, min(fetch, max(1, self.manifest.rows)), params=params
        )
        if rerank:
            scores, rows = self._rerank(queries, rows)
        return _top_k(scores, rows, k)

    def search_rows(self, queries: np.ndarray, k: int, allowed: RowSet) -> SearchResult:
        """Exact top-k among `allowed` rows, by their stored vectors: for filters that let
        few rows through, a scan of just those is exact and cheaper than the index."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(queries), max(k, 1)), -np.inf, dtype=np.float32)
        rows = np.full(scores.shape, -1, dtype=np.int64)
        for start in range(0, len(allowed.rows), EXACT_CHUNK_ROWS):
            chunk = allowed.rows[start : start + EXACT_CHUNK_ROWS]
            exact = queries @ np.asarray(self.vectors[chunk], dtype=np.float32).T
            both_scores = np.concatenate([scores, exact], axis=1)
            both_rows = np.concatenate([rows, np.broadcast_to(chunk, exact.shape)], axis=1)
            keep = np.argsort(-both_scores, axis=1, kind="stable")[:, : scores.shape[1]]
            scores = np.take_along_axis(both_scores, keep, axis=1)
            rows = np.take_along_axis(both_rows, keep, axis=1)
        return _top_k(scores, rows, k)

    def _rerank(self, queries: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products with the float16 vectors of the candidates."""
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        # Sorted reads turn the random page faults of a memory map into a forward scan.
        unique, inverse = np.unique(safe, return_inverse=True)
        candidates = np.asarray(self.vectors[unique], dtype=np.float32)[inverse.reshape(safe.shape)]
        exact = np.einsum("qcd,qd->qc", candidates, queries)
        return np.where(valid, exact, -np.inf), rows

    def item_ids(self, rows: np.ndarray) -> np.ndarray:
        return np.where(rows >= 0, np.asarray(self.ids)[np.maximum(rows, 0)], REMOVED)

    def row_of(self, item_id: int) -> int | None:
        """The row of an item id (binary search over the sorted ids), or None."""
        at = int(np.searchsorted(self._sorted_ids, item_id))
        if at < len(self._sorted_ids) and self._sorted_ids[at] == item_id and item_id != REMOVED:
            return int(self._sorted_rows[at])
        return None


def _verify_files(folder: Path, expected: dict[str, str]) -> None:
    """Refuses a version whose files were truncated, bit-flipped or replaced since its build."""
    for name, digest in expected.items():
        if not (folder / name).exists():
            raise IndexLoadError(f"{folder}: {name} is missing")
        if file_sha256(folder / name) != digest:
            raise IndexLoadError(f"{folder}: {name} does not match its checksum (damaged)")


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
