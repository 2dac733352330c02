"""Measured recall: exact neighbours of held-out queries against what the index returns.

Queries are rows of the collection. A query's own row is excluded from both the exact
and the approximate neighbours, so recall measures finding *other* items.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from clipsearch.index.manifest import CurvePoint
from clipsearch.index.version import IndexVersion

K = 10
TIMED_QUERIES = 200
EXACT_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class EvalSet:
    rows: np.ndarray  # query rows
    queries: np.ndarray  # their vectors, float32
    truth: np.ndarray  # (queries, K) exact neighbour rows, self excluded


def make_eval_set(vectors: np.ndarray, ids: np.ndarray, count: int, seed: int = 0) -> EvalSet:
    """Sample `count` live rows as queries and compute their exact neighbours by scanning."""
    live = np.flatnonzero(np.asarray(ids) >= 0)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(live, size=min(count, len(live)), replace=False))
    queries = np.asarray(vectors[rows], dtype=np.float32)
    removed = np.asarray(ids) < 0
    best_scores = np.full((len(rows), K + 1), -np.inf, dtype=np.float32)
    best_rows = np.full((len(rows), K + 1), -1, dtype=np.int64)
    for start in range(0, len(vectors), EXACT_CHUNK_ROWS):
        chunk = np.asarray(vectors[start : start + EXACT_CHUNK_ROWS], dtype=np.float32)
        scores = queries @ chunk.T
        scores[:, removed[start : start + len(chunk)]] = -np.inf
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_rows = np.concatenate(
            [best_rows, np.broadcast_to(np.arange(start, start + len(chunk)), scores.shape)], axis=1
        )
        keep = np.argpartition(-all_scores, K, axis=1)[:, : K + 1]
        best_scores = np.take_along_axis(all_scores, keep, axis=1)
        best_rows = np.take_along_axis(all_rows, keep, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    truth = _without_self(np.take_along_axis(best_rows, order, axis=1), rows)
    return EvalSet(rows, queries, truth)


def nprobe_candidates(nlist: int) -> list[int]:
    if nlist == 0:
        return [0]
    values, n = [], 1
    while n < nlist and n <= 1024:
        values.append(n)
        n *= 2
    return [*values, min(nlist, 1024)] if values[-1:] != [min(nlist, 1024)] else values


def measure(version: IndexVersion, evalset: EvalSet, nprobe: int, candidates: int) -> CurvePoint:
    result = version.search(evalset.queries, K + 1, nprobe or None, candidates or None)
    found = _without_self(result.rows, evalset.rows)
    # A collection of fewer than K+1 vectors has fewer than K neighbours to find.
    exists = np.maximum((evalset.truth >= 0).sum(axis=1), 1)
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, evalset.truth, strict=True)]
    recall_10 = float(np.mean(np.asarray(hits) / exists))
    recall_1 = float(np.mean(found[:, 0] == evalset.truth[:, 0]))
    qps = _single_thread_qps(version, evalset, nprobe, candidates)
    return CurvePoint(nprobe, candidates, recall_1, recall_10, qps)


def recall_curve(
    version: IndexVersion,
    evalset: EvalSet,
    nprobes: Sequence[int],
    target: float,
    candidates: int,
) -> list[CurvePoint]:
    """Points for increasing nprobe; stops two points past where recall@10 stops rising."""
    points: list[CurvePoint] = []
    flat = 0
    for nprobe in nprobes:
        points.append(measure(version, evalset, nprobe, candidates))
        rising = len(points) < 2 or points[-1].recall_at_10 > points[-2].recall_at_10 + 0.002
        flat = 0 if rising and points[-1].recall_at_10 < max(target, 0.999) else flat + 1
        if flat > 2:
            break
    return points


def tune(
    version: IndexVersion,
    evalset: EvalSet,
    nlist: int,
    target: float,
    candidate_steps: Sequence[int],
) -> tuple[list[CurvePoint], CurvePoint]:
    """Sweep nprobe at growing re-rank depths until the target is reached.

    Returns every measured point and the chosen one: the smallest (candidates, nprobe)
    reaching the target, else the most accurate point measured.
    """
    points: list[CurvePoint] = []
    for candidates in candidate_steps:
        points += recall_curve(version, evalset, nprobe_candidates(nlist), target, candidates)
        reaching = [p for p in points if p.recall_at_10 >= target]
        if reaching:
            return points, min(reaching, key=lambda p: (p.candidates, p.nprobe))
    return points, max(points, key=lambda p: (p.recall_at_10, -p.candidates, -p.nprobe))


def _single_thread_qps(
    version: IndexVersion, evalset: EvalSet, nprobe: int, candidates: int
) -> float:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        queries = evalset.queries[:TIMED_QUERIES]
        started = time.perf_counter()
        for query in queries:
            version.search(query[None, :], K, nprobe or None, candidates or None)
        return len(queries) / (time.perf_counter() - started)
    finally:
        faiss.omp_set_num_threads(threads)


def _without_self(found: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
    """Drop each query's own row from its result list (or the last entry if absent)."""
    out = np.empty((len(found), K), dtype=np.int64)
    for i, (rows, own) in enumerate(zip(found, query_rows, strict=True)):
        others = rows[rows != own]
        out[i] = (
            others[:K]
            if len(others) >= K
            else np.pad(others, (0, K - len(others)), constant_values=-1)
        )
    return out
