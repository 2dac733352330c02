"""Measured recall: exact neighbours of evaluation queries against what the index returns.

Held-out queries are rows of the searched index: a query's own row is excluded from both
the exact and the approximate neighbours, so recall measures finding *other* items.
Queries from elsewhere (text embeddings against the images, images against the captions)
have no row to exclude; some have a known true match (a caption's own image), and how
often it is found is measured too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import faiss
import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure
from faiss.contrib.exhaustive_search import knn_ground_truth

from clipsearch.index.manifest import REMOVED, CurvePoint
from clipsearch.index.vector_index import VectorIndex

K = 10
TIMED_QUERIES = 200
EXACT_CHUNK_ROWS = 65_536


@dataclass(frozen=True, eq=False)
class EvalSet:
    queries: np.ndarray  # float32
    # (queries, depth) exact neighbour rows, best first, self excluded; depth is K, or
    # fewer in a collection without K other items to find.
    truth: np.ndarray
    rows: np.ndarray | None = None  # held out: each query's own row; None: from elsewhere
    own: np.ndarray | None = None  # a known true match of each query (a row), if any

    @property
    def own_at_10_exact(self) -> float | None:
        """How often the known match is among the exact nearest: the ceiling of search."""
        return None if self.own is None else _own_rate(self.truth, self.own)


def make_eval_set(vectors: np.ndarray, ids: np.ndarray, count: int, seed: int = 0) -> EvalSet:
    """Sample `count` live rows as queries and find their exact neighbours by a full scan
    (on every GPU faiss sees, if any)."""
    live = np.flatnonzero(np.asarray(ids) != REMOVED)
    rows = sample_rows(ids, count, seed)
    queries = np.asarray(vectors[rows], dtype=np.float32)
    # Asking for no more neighbours than exist leaves no unfilled (-1) slots in the truth.
    k = min(K + 1, len(live))
    _, found = knn_ground_truth(
        queries, _live_chunks(vectors, live), k, metric_type=faiss.METRIC_INNER_PRODUCT
    )
    # The scan numbers live rows 0, 1, ...: map them back to row numbers.
    return EvalSet(queries, _without_self(live[found], rows, max(k - 1, 0)), rows)


def sample_rows(ids: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Up to `count` live rows, sorted, the same ones for the same seed."""
    live = np.flatnonzero(np.asarray(ids) != REMOVED)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(live, size=min(count, len(live)), replace=False))


def outside_eval_set(
    queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, own: np.ndarray | None = None
) -> EvalSet:
    """Queries that are not rows of the searched index, with their exact neighbours among
    its live rows (as make_eval_set finds them); `own`: each one's known true match."""
    live = np.flatnonzero(np.asarray(ids) != REMOVED)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(K, len(live))
    _, found = knn_ground_truth(
        queries, _live_chunks(vectors, live), k, metric_type=faiss.METRIC_INNER_PRODUCT
    )
    return EvalSet(queries, live[found], own=own)


def _live_chunks(vectors: np.ndarray, live: np.ndarray) -> Iterator[np.ndarray]:
    """The live rows in order, as float32 blocks: removed rows are never neighbours."""
    for start in range(0, len(live), EXACT_CHUNK_ROWS):
        yield np.asarray(vectors[live[start : start + EXACT_CHUNK_ROWS]], dtype=np.float32)


def nprobe_candidates(nlist: int) -> list[int]:
    if nlist == 0:
        return [0]
    values, n = [], 1
    while n < nlist and n <= 1024:
        values.append(n)
        n *= 2
    return [*values, min(nlist, 1024)] if values[-1:] != [min(nlist, 1024)] else values


def measure(index: VectorIndex, evalset: EvalSet, nprobe: int, candidates: int) -> CurvePoint:
    depth = evalset.truth.shape[1]
    k = K + 1 if evalset.rows is not None else K  # one more for the query's own row
    result = index.search(evalset.queries, k, nprobe or None, candidates or None)
    if evalset.rows is not None:
        found = _without_self(result.rows, evalset.rows, depth)
    else:
        found = result.rows[:, :depth]
    # Every query has `depth` neighbours to find (with none, there is nothing to miss), so
    # the overall intersection is the mean per-query recall; truth holds no -1, so unfilled
    # results never count as found.
    recall_10 = float(knn_intersection_measure(found, evalset.truth)) if depth else 1.0
    recall_1 = float(knn_intersection_measure(found[:, :1], evalset.truth[:, :1])) if depth else 1.0
    qps = _single_thread_qps(index, evalset, nprobe, candidates)
    own = None if evalset.own is None else _own_rate(result.rows[:, :K], evalset.own)
    return CurvePoint(nprobe, candidates, recall_1, recall_10, qps, own)


def recall_curve(
    index: VectorIndex,
    evalset: EvalSet,
    nprobes: Sequence[int],
    target: float,
    candidates: int,
) -> list[CurvePoint]:
    """Points for increasing nprobe; stops two points past where recall@10 stops rising."""
    points: list[CurvePoint] = []
    flat = 0
    for nprobe in nprobes:
        points.append(measure(index, evalset, nprobe, candidates))
        rising = len(points) < 2 or points[-1].recall_at_10 > points[-2].recall_at_10 + 0.002
        flat = 0 if rising and points[-1].recall_at_10 < max(target, 0.999) else flat + 1
        if flat > 2:
            break
    return points


def tune(
    index: VectorIndex,
    evalset: EvalSet,
    nlist: int,
    target: float,
    candidate_steps: Sequence[int],
) -> tuple[list[CurvePoint], CurvePoint]:
    """Sweep nprobe at growing re-rank depths until the target is reached.

    Returns every measured point and the chosen one: the smallest (candidates, nprobe)
    surely reaching the target (`surely_reaches`), else the most accurate point measured.
    """
    points: list[CurvePoint] = []
    trials = len(evalset.queries) * evalset.truth.shape[1]
    for candidates in candidate_steps:
        points += recall_curve(index, evalset, nprobe_candidates(nlist), target, candidates)
        reaching = [p for p in points if surely_reaches(p.recall_at_10, target, trials)]
        if reaching:
            return points, min(reaching, key=lambda p: (p.candidates, p.nprobe))
    return points, max(points, key=lambda p: (p.recall_at_10, -p.candidates, -p.nprobe))


def surely_reaches(recall: float, target: float, trials: int) -> bool:
    """Whether a recall measured over `trials` true neighbours reaches `target` by more
    than its sampling error: two standard errors below it still do (1,000 queries of 10
    at 0.95: 0.0044). A setting chosen at the bare target missed it on fresh queries
    (1M vectors: text 0.952 on the build's captions, 0.947 on new text-like queries)."""
    if trials <= 0:
        return recall >= target
    return recall - 2 * math.sqrt(recall * (1 - recall) / trials) >= target


def _single_thread_qps(index: VectorIndex, evalset: EvalSet, nprobe: int, candidates: int) -> float:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        queries = evalset.queries[:TIMED_QUERIES]
        started = time.perf_counter()
        for query in queries:
            index.search(query[None, :], K, nprobe or None, candidates or None)
        return len(queries) / (time.perf_counter() - started)
    finally:
        faiss.omp_set_num_threads(threads)


def _own_rate(found: np.ndarray, own: np.ndarray) -> float:
    """The share of queries whose known match is among their found rows."""
    return float((found == own[:, None]).any(axis=1).mean()) if len(own) else 0.0


def _without_self(found: np.ndarray, query_rows: np.ndarray, width: int) -> np.ndarray:
    """Each query's result list without its own row (or without the last entry if its row
    is absent), cut or padded with -1 to `width` columns."""
    out = np.full((len(found), width), -1, dtype=np.int64)
    for i, (rows, own) in enumerate(zip(found, query_rows, strict=True)):
        others = rows[rows != own][:width]
        out[i, : len(others)] = others
    return out
