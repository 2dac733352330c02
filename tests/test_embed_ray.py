"""The Ray engine, on a real local Ray instance, writes what the local engine writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipsearch.collection.manifest import FileKind, read_manifest
from clipsearch.collection.shards import live_errors
from clipsearch.indexer.embed.job import EmbedConfig, EmbedSummary, run_embed
from clipsearch.indexer.embed.sources import SourceSpec
from clipsearch.indexer.engine import Engine
from clipsearch.models import ModelSpec
from tests.conftest import TINY, collection_path, make_collection


def table_of(out: Path) -> dict[int, dict[str, object]]:
    manifest = read_manifest(out)
    assert manifest is not None
    rows = {}
    for entry in manifest.files_of(FileKind.EMBEDDINGS):
        for row in pq.read_table(out / entry.file).to_pylist():
            rows[row["id"]] = row
    return rows


@pytest.mark.slow
def test_ray_and_local_engines_agree(
    local_ray: None, tmp_path: Path, textile_paths: list[Path]
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:24], with_bad=True)
    collection_path(source, 1, textile_paths[1]).with_suffix(".txt").write_text("a caption")
    spec = ModelSpec(TINY, "none", device="cpu")

    def run(engine: Engine, out: Path, batch_size: int = 8) -> EmbedSummary:
        config = EmbedConfig(
            SourceSpec(str(source)),
            out,
            spec,
            batch_size=batch_size,
            shard_size=10,
            embed_captions=True,
            engine=engine,
            quiet=True,
        )
        return run_embed(config)

    run(Engine.LOCAL, tmp_path / "local")
    run(Engine.RAY, tmp_path / "ray")

    local, distributed = table_of(tmp_path / "local"), table_of(tmp_path / "ray")
    assert set(local) == set(distributed) and len(local) == 24
    for item_id, row in local.items():
        other = distributed[item_id]
        assert other["uri"] == row["uri"] and other["caption"] == row["caption"]
        assert other["content_hash"] == row["content_hash"]
        np.testing.assert_allclose(
            np.array(other["embedding"], dtype=np.float32),
            np.array(row["embedding"], dtype=np.float32),
            atol=2e-3,
        )
        assert (other["text_embedding"] is None) == (row["text_embedding"] is None)

    def errors(out: Path) -> set[tuple[object, object]]:
        manifest = read_manifest(out)
        assert manifest is not None
        return {(r["uri"], r["reason"]) for r in live_errors(out, manifest)}

    assert errors(tmp_path / "ray") == errors(tmp_path / "local") != set()

    # resumability is the same: a rerun on Ray finds everything unchanged
    again = run(Engine.RAY, tmp_path / "ray", batch_size=32)
    assert (again.embedded, again.unchanged) == (0, 28)
