"""The recall a build reports, checked against exact search computed here in plain numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.synthetic import write_synthetic_shards
from clipsearch.collection.ids import item_id
from clipsearch.index.manifest import REMOVED
from clipsearch.index.version import IndexVersion
from clipsearch.indexer.build import evaluate
from clipsearch.indexer.build.job import BuildConfig, run_build
from tests.synthetic import clustered_vectors

DIM = 32
K = 10


def exact_top_k(queries: np.ndarray, collection: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the k largest inner products, best first: a full matrix product."""
    scores = queries @ collection.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of the share of their true neighbours that were found."""
    hits = [len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


def test_an_ivf_index_reaches_the_recall_its_manifest_reports(tmp_path: Path) -> None:
    count, held_out = 20_000, 1_000
    vectors = clustered_vectors(count + held_out, DIM, seed=2)
    collection, queries = vectors[:count], vectors[count:]
    write_synthetic_shards(tmp_path / "shards", collection, shard_size=5_000)
    config = BuildConfig(
        tmp_path / "shards", tmp_path / "index", index_factory="IVF128,PQ16x4fs", eval_queries=500
    )
    version = IndexVersion(run_build(config).path)
    m = version.manifest
    assert m.nlist == 128 and m.rerank_candidates > 0
    reported = m.reached
    assert reported is not None

    # The truth over the vectors as the shards hold them (float16), found by item id so
    # nothing depends on how the build numbers its rows.
    stored = collection.astype(np.float16).astype(np.float32)
    ids = np.array([item_id(f"item-{i}") for i in range(count)])
    truth = ids[exact_top_k(queries, stored, K)]
    found = version.item_ids(version.search(queries, K).rows)  # the manifest's defaults
    measured = recall(found, truth)

    assert measured >= m.target_recall
    # The build measured 500 collection rows, this test 1,000 held-out queries: each mean
    # has a standard error near 0.003, so 0.02 is far beyond chance.
    assert measured == pytest.approx(reported.recall_at_10, abs=0.02)
    # The check has teeth: the cheapest setting measured is well short of the target.
    cheapest = version.item_ids(version.search(queries, K, nprobe=1).rows)
    assert recall(cheapest, truth) < m.target_recall - 0.05


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


@pytest.mark.parametrize(
    ("recall", "target", "trials", "sure"),
    [
        (0.9517, 0.95, 10_000, False),  # the 1M build's text setting: within its noise
        (0.9556, 0.95, 10_000, True),
        (0.955, 0.95, 3_000, False),  # fewer queries, wider margin
        (0.96, 0.95, 3_000, True),
        (1.0, 1.0, 10, True),  # nothing missed: no margin
        (0.94, 0.95, 10**9, False),
        (0.95, 0.95, 0, True),  # nothing to measure against: the bare comparison
    ],
)
def test_a_default_must_reach_the_target_beyond_sampling_error(
    recall: float, target: float, trials: int, sure: bool
) -> None:
    assert evaluate.surely_reaches(recall, target, trials) is sure


def test_a_setting_exactly_at_the_target_is_rarely_taken_for_one_above_it() -> None:
    """Measured recalls drawn by numpy as binomial samples: a setting whose true recall
    is the target passes about 2.3% of the time (two standard errors, one-sided); one
    clearly above it nearly always passes."""
    rng = np.random.default_rng(5)
    trials = 10_000
    at_target = rng.binomial(trials, 0.95, size=4_000) / trials
    above = rng.binomial(trials, 0.96, size=4_000) / trials
    passed_at = np.mean([evaluate.surely_reaches(r, 0.95, trials) for r in at_target])
    passed_above = np.mean([evaluate.surely_reaches(r, 0.95, trials) for r in above])
    assert 0.005 < passed_at < 0.05
    assert passed_above > 0.95
