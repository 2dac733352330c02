"""`clipsearch build --engine ray` on a real local Ray instance matches the local build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.synthetic import write_synthetic_shards
from clipsearch.index.version import IndexVersion
from clipsearch.indexer.build.job import BuildConfig, run_build
from clipsearch.indexer.engine import Engine
from tests.synthetic import clustered_vectors

FACTORY = "IVF64,SQ8"  # on-disk capable and quick to train


@pytest.mark.slow
def test_ray_build_reaches_the_same_recall_as_the_local_build(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = tmp_path / "shards"
    write_synthetic_shards(shards, clustered_vectors(12_000, 32, seed=3), shard_size=3000)
    monkeypatch.setattr(
        "clipsearch.indexer.build.add_ray.ROWS_PER_TASK", 4_000
    )  # several tasks to merge

    def build(engine: Engine, out: Path) -> IndexVersion:
        config = BuildConfig(
            shards, out, index_factory=FACTORY, on_disk=True, engine=engine, eval_queries=300
        )
        return IndexVersion(run_build(config).path)

    local = build(Engine.LOCAL, tmp_path / "local")
    distributed = build(Engine.RAY, tmp_path / "ray")

    assert distributed.manifest.count == local.manifest.count == 12_000
    assert (distributed.path / "index.ivfdata").exists()
    assert not list(distributed.path.glob(".group-*"))
    curves = zip(distributed.manifest.recall_curve, local.manifest.recall_curve, strict=True)
    for ours, theirs in curves:
        assert ours.nprobe == theirs.nprobe
        assert ours.recall_at_10 == pytest.approx(theirs.recall_at_10, abs=0.01)
    queries = np.asarray(local.vectors[:100], dtype=np.float32)
    np.testing.assert_array_equal(
        distributed.search(queries, 10, nprobe=16).rows, local.search(queries, 10, nprobe=16).rows
    )
