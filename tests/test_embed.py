"""`clipsearch embed` end to end on real images, with the local engine."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipsearch.cli.main import main
from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import FileKind, ManifestError, VectorDtype, read_manifest
from clipsearch.collection.shards import collection_state, live_errors, read_vectors
from clipsearch.encoder import ClipEncoder
from clipsearch.indexer.embed.job import EmbedConfig, run_embed
from clipsearch.indexer.embed.sources import SourceSpec
from clipsearch.indexer.lock import LockedError
from clipsearch.models import ModelSpec
from tests.conftest import TINY, bad_inputs, collection_path, make_collection

TINY_ARGS = ["--model", TINY, "--pretrained", "none", "--quiet"]
FP16_TOLERANCE = 2e-3


def embed(source: Path, out: Path, *extra: str) -> int:
    return main(
        ["--log-level", "WARNING", "embed", str(source), "--out", str(out), *TINY_ARGS, *extra]
    )


def config(source: Path, out: Path, **kwargs: object) -> EmbedConfig:
    spec = ModelSpec(TINY, "none", device="cpu")
    return EmbedConfig(SourceSpec(str(source)), out, spec, quiet=True, **kwargs)  # type: ignore[arg-type]


def live_rows(out: Path) -> dict[str, dict[str, object]]:
    """uri -> row of every live embedded item (latest event wins)."""
    manifest = read_manifest(out)
    assert manifest is not None
    state = collection_state(out, manifest)
    rows = {}
    for entry in manifest.files_of(FileKind.EMBEDDINGS):
        for row in pq.read_table(out / entry.file).to_pylist():
            live = state.get(row["id"])
            if live is not None and live.seq == entry.seq and live.kind is FileKind.EMBEDDINGS:
                assert row["uri"] not in rows
                rows[row["uri"]] = row
    return rows


def test_embeds_every_image_and_records_every_bad_input(
    tmp_path: Path, textile_paths: list[Path], tiny_encoder: ClipEncoder
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:40], with_bad=True)
    first_path = collection_path(source, 0, textile_paths[0])
    first_path.with_suffix(".txt").write_text("a woven textile\n")
    first_path.with_suffix(".json").write_text('{"cls": 1}')
    out = tmp_path / "shards"

    code = embed(source, out, "--shard-size", "16", "--batch-size", "8", "--workers", "2")

    assert code == 3  # some inputs were skipped
    rows = live_rows(out)
    assert len(rows) == 40
    assert all(row["id"] == item_id(uri) for uri, row in rows.items())
    first = rows[str(first_path)]
    assert first["caption"] == "a woven textile"
    assert json.loads(first["metadata"]) == {"cls": 1}
    assert (first["width"], first["height"]) == (250, 250)
    # the stored vectors are the encoder's, to float16 precision
    uris = sorted(rows)
    table = {r["uri"]: r for r in rows.values()}
    stored = np.array([table[u]["embedding"] for u in uris], dtype=np.float32)
    fresh = tiny_encoder.encode_images([Path(u).read_bytes() for u in uris])
    np.testing.assert_allclose(stored, fresh, atol=FP16_TOLERANCE)

    manifest = read_manifest(out)
    assert manifest is not None
    errors = {Path(str(r["uri"])).name: r["reason"] for r in live_errors(out, manifest)}
    assert errors == {
        "zero.jpg": "empty",
        "text.jpg": "not_an_image",
        "truncated.jpg": "truncated",
        "bomb.png": "too_large",
    }
    assert set(bad_inputs()) == set(errors)
    metadata = json.loads(pq.read_schema(out / "part-00000.parquet").metadata[b"clipsearch"])
    assert metadata["format"]["model"] == TINY and metadata["format"]["dim"] == 64
    assert metadata["format"]["preprocess"]["mean"] == list(tiny_encoder.info.preprocess.mean)
    for entry in manifest.files:
        assert (out / entry.file).exists() and entry.rows == pq.read_metadata(
            out / entry.file
        ).num_rows


def test_rerun_embeds_only_new_and_changed_and_records_deletions(
    tmp_path: Path, textile_paths: list[Path]
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:30])
    out = tmp_path / "shards"
    first = run_embed(config(source, out, shard_size=8))
    assert (first.embedded, first.unchanged) == (30, 0)

    first_hashes = {uri: row["content_hash"] for uri, row in live_rows(out).items()}
    again = run_embed(config(source, out, shard_size=8))
    assert (again.embedded, again.unchanged, again.deleted) == (0, 30, 0)

    files = sorted(source.rglob("*.jpg"))
    files[0].unlink()  # deleted
    changed = files[1]
    changed.write_bytes(textile_paths[100].read_bytes())  # changed content
    os.utime(changed, (time.time() + 10, time.time() + 10))
    make_collection(source / "more", textile_paths[30:35])  # 5 new
    third = run_embed(config(source, out, shard_size=8))
    assert (third.embedded, third.unchanged, third.deleted) == (6, 28, 1)

    rows = live_rows(out)
    assert len(rows) == 34
    assert str(files[0]) not in rows
    assert str(collection_path(source / "more", 0, textile_paths[30])) in rows
    assert rows[str(changed)]["content_hash"] != first_hashes[str(changed)]
    ids = [r["id"] for r in rows.values()]
    assert len(set(ids)) == len(ids)


def test_changed_image_replaces_its_old_vector(
    tmp_path: Path, textile_paths: list[Path], tiny_encoder: ClipEncoder
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:3])
    out = tmp_path / "shards"
    run_embed(config(source, out))
    target = sorted(source.rglob("*.jpg"))[0]
    target.write_bytes(textile_paths[1500].read_bytes())
    os.utime(target, (time.time() + 10, time.time() + 10))
    run_embed(config(source, out))
    stored = np.array(live_rows(out)[str(target)]["embedding"], dtype=np.float32)
    expected = tiny_encoder.encode_images([target.read_bytes()])[0]
    np.testing.assert_allclose(stored, expected, atol=FP16_TOLERANCE)


def test_refuses_to_mix_models(tmp_path: Path, textile_paths: list[Path]) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:2])
    out = tmp_path / "shards"
    run_embed(config(source, out))
    other = EmbedConfig(SourceSpec(str(source)), out, ModelSpec("ViT-B-32", "none"), quiet=True)
    with pytest.raises(
        ManifestError, match=r"clipsearch-tiny/none \(64-d\).*ViT-B-32/none \(512-d\)"
    ):
        run_embed(other)
    with pytest.raises(ManifestError, match="float16 vectors, this job float32"):
        run_embed(config(source, out, embedding_dtype=VectorDtype.FLOAT32))
    assert embed(source, out, "--model", "ViT-B-32") == 1


def test_float32_and_caption_embeddings(
    tmp_path: Path, textile_paths: list[Path], tiny_encoder: ClipEncoder
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:4])
    captioned = sorted(source.rglob("*.jpg"))[0]
    captioned.with_suffix(".txt").write_text("a red carpet")
    out = tmp_path / "shards"
    run_embed(config(source, out, embedding_dtype=VectorDtype.FLOAT32, embed_captions=True))
    table = pq.read_table(out / "part-00000.parquet")
    assert str(table.schema.field("embedding").type.value_type) == "float"
    rows = {r["uri"]: r for r in table.to_pylist()}
    text = np.array(rows[str(captioned)]["text_embedding"], dtype=np.float32)
    np.testing.assert_allclose(text, tiny_encoder.encode_texts(["a red carpet"])[0], atol=1e-5)
    assert sum(r["text_embedding"] is None for r in rows.values()) == 3
    assert read_vectors(table.column("embedding"), 64).shape == (4, 64)


def test_a_second_job_on_the_same_folder_is_refused(
    tmp_path: Path, textile_paths: list[Path]
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:2])
    out = tmp_path / "shards"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LockedError, match="another clipsearch embed"):
            run_embed(config(source, out))


def test_leftovers_of_a_crash_are_removed(tmp_path: Path, textile_paths: list[Path]) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:5])
    out = tmp_path / "shards"
    run_embed(config(source, out))
    (out / ".tmp-abc.parquet").write_bytes(b"half written")
    (out / "part-00042.parquet").write_bytes(b"renamed but never committed")
    summary = run_embed(config(source, out))
    assert summary.unchanged == 5
    assert not (out / ".tmp-abc.parquet").exists() and not (out / "part-00042.parquet").exists()


def test_fsspec_urls_work_end_to_end(tmp_path: Path, textile_paths: list[Path]) -> None:
    """fsspec's in-memory filesystem stands in for a remote store: uris stay URLs."""
    import fsspec

    fs = fsspec.filesystem("memory")
    for path in textile_paths[:3]:
        fs.pipe(f"/bucket/photos/{path.name}", path.read_bytes())
    fs.pipe("/bucket/photos/broken.jpg", b"nope")
    out = tmp_path / "shards"
    try:
        spec = ModelSpec(TINY, "none")
        source = SourceSpec("memory://bucket/photos")
        summary = run_embed(EmbedConfig(source, out, spec, workers=0, quiet=True))
    finally:
        fs.rm("/bucket", recursive=True)
    assert summary.embedded == 3 and sum(summary.skipped.values()) == 1
    assert all(uri.startswith("memory://") for uri in live_rows(out))
