"""Exact re-ranking of an index's candidates by their float16 vectors (VectorIndex).

The re-rank keeps, per query, the k best of the candidates the coarse index proposed,
scored by the exact inner product with the stored float16 vectors. numpy computes the
same from the candidate lists here, so any slip (a wrong row, a score of another row,
a duplicate, a padding row scored) shows.
"""

from __future__ import annotations

import faiss
import numpy as np

from clipsearch.index.vector_index import VectorIndex

DIM, ROWS, K = 48, 3000, 10


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _index(vectors: np.ndarray, candidates: int) -> VectorIndex:
    index = faiss.index_factory(DIM, "IVF16,PQ12x4fs", faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    return VectorIndex(index, vectors.astype(np.float16), 4, candidates)


def _truth(stored: np.ndarray, query: np.ndarray, proposed: np.ndarray) -> tuple[list, list]:
    """numpy: the k best distinct proposed rows by float32 products of the float16 rows."""
    rows = np.unique(proposed[proposed >= 0])
    scores = stored[rows].astype(np.float32) @ query
    order = np.argsort(-scores, kind="stable")[:K]
    return list(rows[order]), list(scores[order])


def test_rerank_keeps_the_exact_best_of_each_querys_candidates() -> None:
    rng = np.random.default_rng(0)
    vectors = _unit(rng.standard_normal((ROWS, DIM)))
    index = _index(vectors, candidates=50)
    queries = _unit(rng.standard_normal((6, DIM)))
    stored = index.vectors

    result = index.search(queries, K, nprobe=4, candidates=50)

    params = faiss.SearchParametersIVF()
    params.nprobe = 4
    _, proposed = index.index.search(queries, 50, params=params)
    for i, query in enumerate(queries):
        rows, scores = _truth(stored, query, proposed[i])
        assert list(result.rows[i]) == rows
        np.testing.assert_allclose(result.scores[i], scores, rtol=0, atol=1e-5)
    # Re-ranking changed the order the codes gave: the test is not vacuous.
    assert any(list(result.rows[i]) != list(proposed[i, :K]) for i in range(len(queries)))


def test_rerank_ignores_padding_and_repeats_and_fills_with_minus_one() -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng.standard_normal((ROWS, DIM)))
    index = _index(vectors, candidates=8)
    queries = _unit(rng.standard_normal((3, DIM)))
    proposed = np.array(
        [
            [5, 9, 5, -1, 9, 7, -1, 2],  # repeats and padding: 4 distinct rows
            [-1] * 8,  # nothing proposed
            [1, 2, 3, 4, 5, 6, 7, 8],
        ]
    )

    scores, rows = index._rerank(queries, proposed, K)

    assert sorted(rows[0, :4]) == [2, 5, 7, 9] and (rows[0, 4:] == -1).all()
    assert np.isneginf(scores[0, 4:]).all()
    assert (rows[1] == -1).all() and np.isneginf(scores[1]).all()
    expected_rows, expected_scores = _truth(index.vectors, queries[2], proposed[2])
    assert list(rows[2, :8]) == expected_rows
    np.testing.assert_allclose(scores[2, :8], expected_scores, rtol=0, atol=1e-5)
