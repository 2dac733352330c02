"""One published index version: its files, its manifest, and searching it.

INDEX_DIR/CURRENT                  the name of the version being served (atomically replaced)
INDEX_DIR/versions/vNNNNNN/
  manifest.json                    IndexManifest
  index.faiss [+ index.ivfdata]    the FAISS index; its ids are row numbers
  ids.npy                          row -> item id (int64; -1 for a removed row)
  vectors.npy                      row -> float16 vector, memory-mapped, for exact re-ranking
  records.jsonl, records.offsets.npy   row -> uri, caption, metadata, width, height
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from clipsearch.errors import ClipsearchError
from indexer.metastore import RecordStore
from indexer.shards import file_sha256

INDEX_FORMAT = "clipsearch-index/1"
INDEX_FILE = "index.faiss"
IVFDATA_FILE = "index.ivfdata"
IDS_FILE = "ids.npy"
VECTORS_FILE = "vectors.npy"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"
REMOVED = -1


class IndexLoadError(ClipsearchError):
    """A version that is missing, corrupt or inconsistent, and must not be served."""


@dataclass(frozen=True)
class CurvePoint:
    nprobe: int
    candidates: int  # re-ranked per query; 0 for exact search
    recall_at_1: float
    recall_at_10: float
    queries_per_second: float  # single query, single thread


@dataclass(frozen=True)
class SourceShard:
    file: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class IndexManifest:
    version: str
    model: str
    pretrained: str
    dim: int
    preprocess: dict[str, object]
    factory: str
    count: int  # vectors searchable (removed rows excluded)
    rows: int  # rows in the index, removed ones included
    nlist: int
    rerank_candidates: int  # 0: results come straight from the index
    default_nprobe: int
    target_recall: float
    recall_curve: list[CurvePoint]
    eval_queries: int
    shards_dir: str
    source_shards: list[SourceShard]
    build_seconds: float
    created: str
    clipsearch_version: str
    metric: str = "inner_product"
    format: str = INDEX_FORMAT
    parent_version: str | None = None
    on_disk: bool = False
    extra: dict[str, object] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, all but this

    @property
    def reached(self) -> CurvePoint | None:
        """The measured point of the default search settings."""
        default = (self.default_nprobe, self.rerank_candidates)
        return next((p for p in self.recall_curve if (p.nprobe, p.candidates) == default), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @staticmethod
    def from_json(text: str) -> IndexManifest:
        raw = json.loads(text)
        if raw.get("format") != INDEX_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {INDEX_FORMAT!r}")
        raw["recall_curve"] = [CurvePoint(**p) for p in raw["recall_curve"]]
        raw["source_shards"] = [SourceShard(**s) for s in raw["source_shards"]]
        return IndexManifest(**raw)


@dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # (queries, k) inner products, best first
    rows: np.ndarray  # (queries, k) row numbers, -1 where fewer than k results exist


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
        self.ivf = _ivf_or_none(self.index)

    @property
    def name(self) -> str:
        return self.manifest.version

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
    ) -> SearchResult:
        """Top-k rows by inner product. `nprobe` and `candidates` (how many the index
        proposes for exact re-ranking) override the build's defaults for this call only."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        rerank = self.manifest.rerank_candidates > 0
        fetch = max(k, (candidates or self.manifest.rerank_candidates) if rerank else k)
        params = None
        if self.ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe or self.manifest.default_nprobe
        scores, rows = self.index.search(
            queries, min(fetch, max(1, self.manifest.rows)), params=params
        )
        if rerank:
            scores, rows = self._rerank(queries, rows)
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


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a version but its manifest, for verifying it at load."""
    return {
        p.name: file_sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_FILE
    }


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


def _ivf_or_none(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def current_version(index_dir: Path) -> Path | None:
    pointer = index_dir / CURRENT_FILE
    if not pointer.exists():
        return None
    return index_dir / VERSIONS_DIR / pointer.read_text().strip()
