"""The exact neighbours a build measures recall against, checked against plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.index.manifest import REMOVED
from clipsearch.indexer.build import evaluate
from tests.synthetic import clustered_vectors

DIM = 32
K = 10


def test_exact_neighbours_skip_removed_rows_and_the_query_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(evaluate, "EXACT_CHUNK_ROWS", 7)  # many blocks, some shorter than K
    vectors = clustered_vectors(100, DIM, seed=4).astype(np.float16)
    ids = np.arange(100, dtype=np.int64)
    removed = np.arange(0, 100, 3)
    ids[removed] = REMOVED
    evalset = evaluate.make_eval_set(vectors, ids, 20, seed=1)

    assert not np.isin(evalset.rows, removed).any()
    exact = np.asarray(vectors, np.float32)
    scores = evalset.queries @ exact.T
    scores[:, removed] = -np.inf
    scores[np.arange(len(evalset.rows)), evalset.rows] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(evalset.truth, expected)


def test_a_collection_with_fewer_than_k_others_has_shallower_truth() -> None:
    vectors = clustered_vectors(5, DIM)
    evalset = evaluate.make_eval_set(vectors, np.arange(5, dtype=np.int64), 5)
    assert evalset.truth.shape == (5, 4)
    for row, neighbours in zip(evalset.rows, evalset.truth, strict=True):
        assert sorted(neighbours) == sorted(set(range(5)) - {row})
