"""One published index version, loaded: verified, memory-mapped, searchable."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from clipsearch.errors import ClipsearchError
from clipsearch.index.fields import read_fields
from clipsearch.index.manifest import (
    CAPTIONS_INDEX_FILE,
    CAPTIONS_ROWS_FILE,
    CAPTIONS_VECTORS_FILE,
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    REMOVED,
    VECTORS_FILE,
    CaptionsManifest,
    IndexManifest,
)
from clipsearch.index.records import RecordStore
from clipsearch.index.vector_index import RowSet, SearchResult, VectorIndex, ivf_of
from clipsearch.index.verified import DamagedFileError, StampStore, Verification, verify_files

__all__ = [
    "CaptionIndex",
    "IndexLoadError",
    "IndexVersion",
    "LoadTimings",
    "RowSet",
    "SearchResult",
    "VectorIndex",
    "ivf_of",
]


class IndexLoadError(ClipsearchError):
    """A version that is missing, corrupt or inconsistent, and must not be served."""


class CaptionIndex(VectorIndex):
    """The captions of a version's items: an index over caption rows, and each caption's
    item row. An item has one caption at most, so caption hits are distinct items."""

    def __init__(
        self,
        index: faiss.Index,
        vectors: np.ndarray,
        item_rows: np.ndarray,
        manifest: CaptionsManifest,
    ) -> None:
        super().__init__(index, vectors, manifest.default_nprobe, manifest.rerank_candidates)
        self.item_rows = item_rows  # caption row -> item row
        self.manifest = manifest

    def items_of(self, rows: np.ndarray) -> np.ndarray:
        """The item rows of caption rows (-1 stays -1)."""
        return np.where(rows >= 0, np.asarray(self.item_rows)[np.maximum(rows, 0)], -1)

    def allowed(self, items: np.ndarray) -> RowSet:
        """The captions whose items pass a filter (`items`: one truth value per item row):
        filters test items, and a caption passes with its item."""
        return RowSet.of(items[self.item_rows])


@dataclass(frozen=True)
class LoadTimings:
    """Where a load's time went, in seconds."""

    manifest_s: float
    verify_s: float  # checksums (clipsearch.index.verified)
    index_s: float  # faiss.read_index: the index file is read into memory
    arrays_s: float  # ids, vectors, records and captions memory-mapped
    check_s: float  # shapes checked against the manifest, ids sorted for lookups

    @property
    def total_s(self) -> float:
        return self.manifest_s + self.verify_s + self.index_s + self.arrays_s + self.check_s


class IndexVersion:
    """A loaded version. Immutable once opened: search settings are passed per call.

    Every file is checked against the manifest's checksum before anything reads it; with
    `stamps`, files verified before and unchanged since are not hashed again (see
    clipsearch.index.verified for what that still catches)."""

    def __init__(self, path: Path, stamps: StampStore | None = None) -> None:
        self.path = path
        laps = [time.perf_counter()]
        try:
            self.manifest = IndexManifest.from_json((path / MANIFEST_FILE).read_text())
            laps.append(time.perf_counter())
            self.verification: Verification = verify_files(path, self.manifest.files, stamps)
            laps.append(time.perf_counter())
            flags = faiss.IO_FLAG_ONDISK_SAME_DIR if self.manifest.on_disk else 0
            self.index = faiss.read_index(str(path / INDEX_FILE), flags)
            laps.append(time.perf_counter())
            self.ids = np.load(path / IDS_FILE, mmap_mode="r")
            self.vectors = np.load(path / VECTORS_FILE, mmap_mode="r")
            self.records = RecordStore(path)
            self.captions = _load_captions(path, self.manifest.captions, flags)
            laps.append(time.perf_counter())
        except DamagedFileError as err:
            raise IndexLoadError(str(err)) from err
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise IndexLoadError(f"{path}: cannot load this index version: {err}") from err
        self._check()
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids = np.asarray(self.ids)[order]
        self._sorted_rows = order
        laps.append(time.perf_counter())
        self.timings = LoadTimings(*(b - a for a, b in itertools.pairwise(laps)))
        m = self.manifest
        self.images = VectorIndex(self.index, self.vectors, m.default_nprobe, m.rerank_candidates)
        self.ivf = self.images.ivf

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
        problems += self._caption_problems()
        if problems:
            raise IndexLoadError(f"{self.path}: inconsistent index version: " + "; ".join(problems))

    def _caption_problems(self) -> list[str]:
        captions, m = self.captions, self.manifest
        if captions is None:
            return []
        count = captions.manifest.count
        problems = []
        if captions.index.ntotal != count or captions.index.d != m.dim:
            problems.append(
                f"{CAPTIONS_INDEX_FILE} holds {captions.index.ntotal} vectors of dim "
                f"{captions.index.d}, manifest says {count} of dim {m.dim}"
            )
        if captions.vectors.shape != (count, m.dim):
            problems.append(f"{CAPTIONS_VECTORS_FILE} has shape {captions.vectors.shape}")
        rows = np.asarray(captions.item_rows)
        if rows.shape != (count,):
            problems.append(f"{CAPTIONS_ROWS_FILE} has shape {rows.shape}, expected ({count},)")
        elif count and (rows.min() < 0 or rows.max() >= m.rows):
            problems.append(f"{CAPTIONS_ROWS_FILE} names rows the version does not have")
        elif (self.ids[rows] == REMOVED).any():
            problems.append(f"{CAPTIONS_ROWS_FILE} names rows that hold no item")
        return problems

    def search(
        self,
        queries: np.ndarray,
        k: int,
        nprobe: int | None = None,
        candidates: int | None = None,
        allowed: RowSet | None = None,
    ) -> SearchResult:
        """The images: see VectorIndex.search."""
        return self.images.search(queries, k, nprobe, candidates, allowed)

    def search_rows(self, queries: np.ndarray, k: int, allowed: RowSet) -> SearchResult:
        """The images: see VectorIndex.search_rows."""
        return self.images.search_rows(queries, k, allowed)

    def item_ids(self, rows: np.ndarray) -> np.ndarray:
        return np.where(rows >= 0, np.asarray(self.ids)[np.maximum(rows, 0)], REMOVED)

    def row_of(self, item_id: int) -> int | None:
        """The row of an item id (binary search over the sorted ids), or None."""
        at = int(np.searchsorted(self._sorted_ids, item_id))
        if at < len(self._sorted_ids) and self._sorted_ids[at] == item_id and item_id != REMOVED:
            return int(self._sorted_rows[at])
        return None


def _load_captions(
    folder: Path, manifest: CaptionsManifest | None, flags: int
) -> CaptionIndex | None:
    if manifest is None:
        return None
    return CaptionIndex(
        faiss.read_index(str(folder / CAPTIONS_INDEX_FILE), flags),
        np.load(folder / CAPTIONS_VECTORS_FILE, mmap_mode="r"),
        np.load(folder / CAPTIONS_ROWS_FILE, mmap_mode="r"),
        manifest,
    )
