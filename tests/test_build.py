"""`clipsearch build`: real FAISS indexes from real shards, measured and published atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from bench.synthetic import write_synthetic_shards
from clipsearch.cli.main import main
from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import FileKind, read_manifest, write_manifest
from clipsearch.collection.shards import DELETIONS_SCHEMA, write_shard_file
from clipsearch.index.manifest import CURRENT_FILE, current_version
from clipsearch.index.publish import list_versions
from clipsearch.index.records import Record
from clipsearch.index.version import IndexLoadError, IndexVersion
from clipsearch.indexer.build.job import BuildConfig, BuildError, run_build
from tests.synthetic import clustered_vectors

DIM = 32
FAST_IVF = "IVF64,PQ16x4fs"  # small and quick to train; re-ranked (PQ)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered_vectors(12_000, DIM, seed=1)


@pytest.fixture
def shards(tmp_path: Path, vectors: np.ndarray) -> Path:
    folder = tmp_path / "shards"
    write_synthetic_shards(folder, vectors[:10_000], shard_size=2_500)
    return folder


def build(shards: Path, out: Path, **kwargs: object) -> IndexVersion:
    result = run_build(BuildConfig(shards, out, eval_queries=300, **kwargs))  # type: ignore[arg-type]
    return IndexVersion(result.path)


def test_small_collection_gets_exact_search_that_finds_itself(shards: Path, tmp_path: Path) -> None:
    version = build(shards, tmp_path / "index")
    m = version.manifest
    assert m.factory == "Flat" and m.count == 10_000 and m.rerank_candidates == 0
    assert m.recall_curve[0].recall_at_10 == pytest.approx(1.0)
    query = np.asarray(version.vectors[1234], dtype=np.float32)[None, :]
    result = version.search(query, 5)
    assert result.rows[0, 0] == 1234
    assert version.item_ids(result.rows)[0, 0] == item_id("item-1234")
    assert version.records.get(1234) == Record(
        "item-1234", "caption of item-1234", '{"n": 1234}', 1, 1
    )
    assert version.row_of(item_id("item-1234")) == 1234
    assert version.row_of(12345) is None


def test_ivf_pq_reaches_the_target_recall_it_reports(shards: Path, tmp_path: Path) -> None:
    version = build(shards, tmp_path / "index", index_factory=FAST_IVF, target_recall=0.9)
    m = version.manifest
    assert m.nlist == 64 and m.rerank_candidates in (100, 200, 400)
    first = [p for p in m.recall_curve if p.candidates == 100]
    assert [p.nprobe for p in first] == sorted(p.nprobe for p in first) and first[0].nprobe == 1
    chosen = m.reached
    assert chosen is not None and chosen.recall_at_10 >= 0.9
    setting = (m.rerank_candidates, m.default_nprobe)
    cheaper = [p for p in m.recall_curve if (p.candidates, p.nprobe) < setting]
    assert all(p.recall_at_10 < 0.9 for p in cheaper)  # the smallest setting that reaches it
    assert first[-1].recall_at_10 > first[0].recall_at_10
    # search settings are per call: the shared index is never changed
    assert version.ivf is not None
    before = version.ivf.nprobe
    queries = np.asarray(version.vectors[:50], dtype=np.float32)
    narrow = version.search(queries, 10, nprobe=1)
    wide = version.search(queries, 10, nprobe=64)
    shallow = version.search(queries, 10, nprobe=64, candidates=10)
    assert version.ivf.nprobe == before
    assert not np.array_equal(narrow.rows, wide.rows)
    assert not np.array_equal(shallow.rows, wide.rows)
    assert (wide.rows[:, 0] == np.arange(50)).mean() > 0.95
    assert np.all(np.diff(wide.scores, axis=1) <= 1e-6)  # best first, exact inner products
    exact = np.einsum("qd,qkd->qk", queries, np.asarray(version.vectors, np.float32)[wide.rows])
    np.testing.assert_allclose(wide.scores, exact, atol=1e-5)


def test_default_plan_under_a_tight_budget_uses_pq_and_reranking(
    shards: Path, tmp_path: Path
) -> None:
    version = build(shards, tmp_path / "index", memory_budget=400_000, target_recall=0.8)
    assert "x4fs" in version.manifest.factory and version.manifest.factory.startswith("OPQ")
    assert version.manifest.rerank_candidates > 0
    assert version.manifest.reached is not None


def test_add_appends_new_rows_and_drops_deleted_ones(
    shards: Path, tmp_path: Path, vectors: np.ndarray
) -> None:
    out = tmp_path / "index"
    first = build(shards, out, index_factory=FAST_IVF)
    write_synthetic_shards(shards, vectors[10_000:], first=10_000)
    manifest = read_manifest(shards)
    assert manifest is not None
    gone = [f"item-{i}" for i in range(0, 500)]
    deleted = pa.table({"id": [item_id(u) for u in gone], "uri": gone}, schema=DELETIONS_SCHEMA)
    entry = write_shard_file(
        shards, FileKind.DELETIONS, manifest.next_seq, deleted, manifest.embedding, 2
    )
    write_manifest(shards, manifest.with_file(entry))

    second = build(shards, out, add=True)

    m = second.manifest
    assert m.parent_version == first.name and m.factory == FAST_IVF
    assert m.count == 12_000 - 500 and m.rows == 12_000
    assert second.row_of(item_id("item-10")) is None
    new_row = second.row_of(item_id("item-11000"))
    assert new_row is not None and second.records.get(new_row).uri == "item-11000"
    result = second.search(np.asarray(second.vectors[new_row], np.float32)[None, :], 3, nprobe=64)
    assert result.rows[0, 0] == new_row
    everything = second.search(np.asarray(second.vectors[:600], np.float32), 10, nprobe=64)
    assert not set(everything.rows.ravel()) & set(range(500)), "a deleted row was returned"
    assert m.reached is not None and m.reached.recall_at_10 >= 0.9


def test_add_to_an_index_of_another_model_is_refused(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    build(shards, out, index_factory=FAST_IVF)
    other = tmp_path / "other"
    write_synthetic_shards(other, clustered_vectors(3000, DIM * 2))
    with pytest.raises(BuildError, match="refusing --add"):
        run_build(BuildConfig(other, out, add=True))


def test_failed_build_leaves_the_current_version_serving(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "index"
    first = build(shards, out)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("clipsearch.indexer.build.evaluate.make_eval_set", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build(shards, out)
    assert current_version(out) == first.path
    assert list_versions(out) == [first.name]
    assert not list(out.glob(".building-*"))


def test_leftovers_of_a_killed_build_are_removed(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    build(shards, out)
    (out / ".building-deadbeef").mkdir()
    (out / ".building-deadbeef" / "index.faiss").write_bytes(b"half")
    build(shards, out)
    assert not (out / ".building-deadbeef").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "ids", "manifest"])
def test_damaged_versions_are_refused(shards: Path, tmp_path: Path, damage: str) -> None:
    version = build(shards, tmp_path / "index", index_factory=FAST_IVF)
    path = version.path
    if damage == "truncate":
        data = (path / "index.faiss").read_bytes()
        (path / "index.faiss").write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data = bytearray((path / "index.faiss").read_bytes())
        data[:8] = b"\xff" * 8  # the header: not a FAISS index any more
        (path / "index.faiss").write_bytes(bytes(data))
    elif damage == "ids":
        np.save(path / "ids.npy", np.arange(10, dtype=np.int64))
    else:
        (path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexLoadError):
        IndexVersion(path)


@pytest.mark.parametrize("name", ["index.faiss", "vectors.npy", "records.jsonl", "ids.npy"])
def test_a_single_flipped_bit_anywhere_is_caught_by_the_checksums(
    shards: Path, tmp_path: Path, name: str
) -> None:
    path = build(shards, tmp_path / "index", index_factory=FAST_IVF).path
    data = bytearray((path / name).read_bytes())
    data[len(data) * 2 // 3] ^= 0x10  # deep inside, where FAISS and numpy do not look
    (path / name).write_bytes(bytes(data))
    with pytest.raises(IndexLoadError, match=f"{name} does not match its checksum"):
        IndexVersion(path)


def test_old_versions_are_kept_for_rollback(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    names = [build(shards, out, keep_versions=2).name for _ in range(3)]
    assert list_versions(out) == names[1:]
    assert (out / CURRENT_FILE).read_text().strip() == names[2]
    assert main(["versions", str(out), "--use", names[1]]) == 0
    assert current_version(out) == out / "versions" / names[1]
    assert main(["versions", str(out), "--use", "v999999"]) == 1


def test_on_disk_index_loads_after_the_folder_moves(shards: Path, tmp_path: Path) -> None:
    version = build(shards, tmp_path / "index", on_disk=True, memory_budget=300_000)
    assert (version.path / "index.ivfdata").exists()
    assert "x4fs" not in version.manifest.factory
    moved = tmp_path / "moved"
    shutil.move(str(tmp_path / "index"), moved)
    reopened = IndexVersion(moved / "versions" / version.name)
    query = np.asarray(reopened.vectors[77], np.float32)[None, :]
    assert reopened.search(query, 1, nprobe=64).rows[0, 0] == 77


def test_cli_builds_prints_the_curve_and_draws_it(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "curve.png"
    argv = ["build", str(shards), "--out", str(tmp_path / "index"), "--index-factory", FAST_IVF]
    assert main([*argv, "--eval-queries", "200", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "recall@10" in out and "<- default" in out and "published" in out
    with Image.open(plot) as image:
        assert image.size == (900, 560)
        assert len(set(image.getdata())) > 3  # something was drawn
    assert (
        main(["build", str(shards), "--out", str(tmp_path / "x"), "--index-factory", "Nope"]) == 1
    )
    assert main(["build", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 1


def test_empty_collection_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    write_synthetic_shards(folder, clustered_vectors(10, DIM))
    manifest = read_manifest(folder)
    assert manifest is not None
    ids = [item_id(f"item-{i}") for i in range(10)]
    table = pa.table({"id": ids, "uri": [f"item-{i}" for i in range(10)]}, DELETIONS_SCHEMA)
    entry = write_shard_file(folder, FileKind.DELETIONS, 9, table, manifest.embedding, 2)
    write_manifest(folder, manifest.with_file(entry))
    with pytest.raises(BuildError, match="no embedded images"):
        run_build(BuildConfig(folder, tmp_path / "index"))
    assert not os.listdir(tmp_path / "index") or not list((tmp_path / "index").glob("versions"))


def test_a_collection_smaller_than_k_is_measured_against_what_exists(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    write_synthetic_shards(folder, clustered_vectors(6, DIM))
    version = IndexVersion(run_build(BuildConfig(folder, tmp_path / "index")).path)
    point = version.manifest.reached
    assert point is not None and point.recall_at_10 == 1.0 and point.recall_at_1 == 1.0
