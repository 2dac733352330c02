"""`clipsearch import`: embeddings made elsewhere become a collection that `build` and
`serve` use unchanged; each source kind end to end, reruns, resuming, refusals, and the
real `clip-retrieval inference` CLI's output."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipsearch.cli.main import main
from clipsearch.client import SearchClient
from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import FileKind, read_manifest
from clipsearch.encoder import load_encoder
from clipsearch.index.version import IndexVersion
from clipsearch.indexer import BuildConfig, run_build
from clipsearch.indexer.imports import model_space
from clipsearch.models import SEED_MODELS, ModelSpec
from clipsearch.types import ImageQuery, Target, VectorQuery
from tests.conftest import TINY, HubCache

if TYPE_CHECKING:
    from clipsearch.server.app import RunningServer

DIM = 64  # clipsearch-tiny's embed_dim
TINY_NONE = ["--model", TINY, "--pretrained", "none"]
SCORE_TOLERANCE = 2e-3  # float16 vectors, stored and queried


def unit(rng: np.random.Generator, rows: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@dataclass(frozen=True)
class Expected:
    """What a source holds: every row's uri and the vector it should be found by."""

    uris: list[str]
    vectors: np.ndarray  # float32 as written (before import normalises)
    texts: dict[str, np.ndarray]  # uri -> caption vector


def write_clip_retrieval_part(
    folder: Path,
    number: int,
    vectors: np.ndarray,
    metadata: dict[str, list[object]],
    texts: np.ndarray | None = None,
    digits: int = 1,
) -> None:
    """One partition as `clip-retrieval inference` writes it: float16 npy + metadata."""
    name = str(number).zfill(digits)
    for sub in ("img_emb", "text_emb", "metadata"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    np.save(folder / "img_emb" / f"img_emb_{name}.npy", vectors.astype(np.float16))
    if texts is not None:
        np.save(folder / "text_emb" / f"text_emb_{name}.npy", texts.astype(np.float16))
    pq.write_table(pa.table(metadata), folder / "metadata" / f"metadata_{name}.parquet")


def clip_retrieval_source(folder: Path, seed: int = 0) -> Expected:
    """Three partitions: files-mode output (image_path, caption, text vectors), webdataset
    output with img2dataset metadata (url, key, width, height, a NaN), no text vectors."""
    rng = np.random.default_rng(seed)
    files = [f"/photos/{i:04d}.jpg" for i in range(300)]
    v0, t0 = unit(rng, 300), unit(rng, 300)
    captions0 = [f"photo {i}" for i in range(300)]
    write_clip_retrieval_part(
        folder, 0, v0, {"image_path": files, "caption": captions0}, t0, digits=2
    )
    urls = [f"https://example.org/img/{i}.jpg" for i in range(200)]
    v1, t1 = unit(rng, 200), unit(rng, 200)
    write_clip_retrieval_part(
        folder,
        1,
        v1,
        {
            "image_path": [f"{i:09d}" for i in range(200)],
            "caption": [f"web image {i}" for i in range(200)],
            "url": urls,
            "key": [f"{i:09d}" for i in range(200)],
            "width": [100 + i for i in range(200)],
            "height": [50] * 200,
            "similarity": [float("nan")] + [0.3] * 199,
        },
        t1,
        digits=2,
    )
    plain = [f"/more/{i}.jpg" for i in range(100)]
    v2 = unit(rng, 100)
    write_clip_retrieval_part(folder, 2, v2, {"image_path": plain}, digits=2)
    texts = dict(zip(files, t0, strict=True)) | dict(zip(urls, t1, strict=True))
    return Expected(files + urls + plain, np.concatenate([v0, v1, v2]), texts)


def import_cli(source: Path | str, out: Path, *extra: str) -> int:
    return main(["--log-level", "WARNING", "import", str(source), "--out", str(out), "--quiet",
                 *extra])  # fmt: skip


def build_version(shards: Path, index: Path, add: bool = False) -> IndexVersion:
    return IndexVersion(run_build(BuildConfig(shards, index, eval_queries=20, add=add)).path)


def assert_finds_itself(version: IndexVersion, uris: list[str], vectors: np.ndarray) -> None:
    """Each vector's nearest item is its own, with its own score (~1)."""
    found = version.search(vectors.astype(np.float32), 3)
    for n, uri in enumerate(uris):
        row = int(found.rows[n, 0])
        assert version.records.get(row).uri == uri
        assert found.scores[n, 0] == pytest.approx(1.0, abs=SCORE_TOLERANCE)
        assert int(version.ids[row]) == item_id(uri)


def part_rows(shards: Path) -> list[dict[str, object]]:
    manifest = read_manifest(shards)
    assert manifest is not None
    rows: list[dict[str, object]] = []
    for entry in manifest.files_of(FileKind.EMBEDDINGS):
        rows += pq.read_table(shards / entry.file).to_pylist()
    return rows


# --- the model's space, without its weights ---------------------------------------------


def test_the_recorded_space_is_what_the_encoder_reports(
    tiny_checkpoint: Path, hub_cache: HubCache
) -> None:
    """The server refuses an index whose space differs from its model's in any field, so
    the space worked out without weights must equal the loaded encoder's exactly."""
    repo = "clipsearch-test/tiny-squash"
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize_mode": "squash"}
    config = {"model_cfg": open_clip.get_model_config(TINY), "preprocess_cfg": preprocess}
    hub_cache.add_model(repo, tiny_checkpoint, config)
    specs = [
        ModelSpec(TINY, "none"),
        ModelSpec(TINY, str(tiny_checkpoint)),
        ModelSpec(pretrained=f"hf-hub:{repo}"),
        ModelSpec("ViT-B-32", "none", preprocess_tag="laion2b_s34b_b79k"),
    ]
    for spec in specs:
        loaded = load_encoder(ModelSpec(spec.model, spec.pretrained, spec.preprocess_tag, "cpu"))
        assert model_space(spec) == loaded.info.space, spec
    assert model_space(specs[2]).preprocess.resize_mode == "squash"  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_pretrained_tag_needs_no_weights_and_gives_the_tags_preprocessing(
    hub_cache: HubCache,
) -> None:
    """The default model by its tag, with an empty offline cache: no weights read, and the
    same space as the architecture loaded with that tag's preprocessing (7 s, 2.5 GB)."""
    seed = SEED_MODELS[0]
    space = model_space(ModelSpec(seed.model, seed.pretrained))
    loaded = load_encoder(ModelSpec(seed.model, "none", seed.pretrained, "cpu")).info
    assert (space.dim, space.preprocess) == (loaded.dim, loaded.preprocess)
    assert (space.model, space.pretrained) == (seed.model, seed.pretrained)
    assert space.preprocess is not None and space.preprocess.mean == (0.5, 0.5, 0.5)


def test_openai_weights_on_an_architecture_without_quickgelu_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    npy(dim=512)(tmp_path)
    model = ["--model", "ViT-B-32", "--pretrained", "openai"]
    with caplog.at_level(logging.WARNING, "clipsearch"):
        assert import_cli(tmp_path / "src", tmp_path / "a", *model) == 0
    assert "need --model ViT-B-32-quickgelu" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "clipsearch"):
        assert import_cli(tmp_path / "src", tmp_path / "b", "--model", "ViT-B-32-quickgelu",
                          "--pretrained", "openai") == 0  # fmt: skip
    assert "QuickGELU" not in caplog.text


# --- each source kind, end to end ---------------------------------------------------------


def test_clip_retrieval_output_is_served_and_found_by_its_own_vectors(
    tmp_path: Path,
    tiny_checkpoint: Path,
    start_server: Callable[..., RunningServer],
) -> None:
    expected = clip_retrieval_source(tmp_path / "cr")
    shards, index = tmp_path / "shards", tmp_path / "index"
    # The server fixture's model is the tiny checkpoint: the collection names the same.
    assert import_cli(tmp_path / "cr", shards, "--model", TINY, "--pretrained",
                      str(tiny_checkpoint)) == 0  # fmt: skip
    run_build(BuildConfig(shards, index, eval_queries=20))
    server = start_server(index)
    rng = np.random.default_rng(1)
    picks = rng.choice(len(expected.uris), 40, replace=False)
    with SearchClient(f"127.0.0.1:{server.port}", timeout_s=30) as client:
        for n in picks:
            uri = expected.uris[n]
            hits = client.search(VectorQuery(expected.vectors[n]), top_k=3).hits
            assert hits[0].uri == uri
            assert hits[0].score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
            assert hits[0].id == item_id(uri)
            if uri in expected.texts:  # captions are searchable by their clip-retrieval vectors
                query = VectorQuery(expected.texts[uri])
                by_caption = client.search(query, top_k=3, target=Target.CAPTIONS).hits
                assert by_caption[0].uri == uri
                assert by_caption[0].score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
        web = client.search(VectorQuery(expected.vectors[300]), top_k=1).hits[0]
    assert web.uri == "https://example.org/img/0.jpg"  # url beats image_path (a wds key)
    assert web.caption == "web image 0"
    assert json.loads(web.metadata_json) == {
        "image_path": "000000000", "key": "000000000", "width": 100, "height": 50,
        "similarity": None,  # pandas' NaN for a missing number: JSON has no NaN
    }  # fmt: skip
    rows = {row["uri"]: row for row in part_rows(shards)}
    assert len(rows) == len(expected.uris)
    assert (rows["https://example.org/img/5.jpg"]["width"], rows["/photos/0000.jpg"]["width"]) == (
        105,
        0,
    )
    assert rows["/more/3.jpg"]["text_embedding"] is None  # partition 2 has no text_emb
    assert rows["/photos/0007.jpg"]["caption"] == "photo 7"
    assert rows["/photos/0007.jpg"]["content_hash"] is None  # the bytes were never read


def test_npy_files_get_file_and_row_uris_or_their_sidecars(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """autofaiss-style .npy files: a.npy without a table (uris FILE.npy#ROW, float32,
    not normalised: a warning), b.npy with b.parquet beside it (uris from its path column)."""
    rng = np.random.default_rng(2)
    source = tmp_path / "embeddings"
    source.mkdir()
    a, b = unit(rng, 150) * 3.0, unit(rng, 120)
    np.save(source / "a.npy", a)
    np.save(source / "b.npy", b.astype(np.float16))
    b_uris = [f"s3://bucket/b/{i}.png" for i in range(120)]
    pq.write_table(pa.table({"path": b_uris, "label": ["x"] * 120}), source / "b.parquet")
    shards = tmp_path / "shards"
    with caplog.at_level(logging.WARNING, "clipsearch"):
        assert import_cli(source, shards, *TINY_NONE) == 0
    assert "150 of 270 vectors were not unit length (norms from 3 to 3)" in caplog.text
    a_uris = [f"{(source / 'a.npy').absolute()}#{i}" for i in range(150)]
    version = build_version(shards, tmp_path / "index")
    assert_finds_itself(version, a_uris + b_uris, np.concatenate([a / 3.0, b]))
    rows = {row["uri"]: row for row in part_rows(shards)}
    assert json.loads(str(rows[b_uris[4]]["metadata"])) == {"label": "x"}
    stored = np.asarray(rows[a_uris[0]]["embedding"], dtype=np.float32)
    assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-3)  # stored normalised


@pytest.mark.parametrize("vector_type", ["list", "fixed_size_list"])
@pytest.mark.parametrize("form", ["file", "folder", "glob"])
def test_parquet_tables_with_an_embedding_column(
    tmp_path: Path, vector_type: str, form: str
) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "tables"
    folder.mkdir()
    expected_uris, expected_vectors = [], []
    for n in range(2 if form != "file" else 1):
        vectors, uris = unit(rng, 80), [f"https://cdn.example/{n}/{i}.jpg" for i in range(80)]
        kind = pa.list_(pa.float32(), DIM if vector_type == "fixed_size_list" else -1)
        table = pa.table(
            {
                "link": uris,
                "vec": pa.array(list(vectors), type=kind),
                "title": [f"title {i}" for i in range(80)],
                "year": list(range(80)),
            }
        )
        pq.write_table(table, folder / f"part{n}.parquet", row_group_size=30)
        expected_uris += uris
        expected_vectors.append(vectors)
    source = {
        "file": str(folder / "part0.parquet"),
        "folder": str(folder),
        "glob": str(folder / "part*.parquet"),
    }[form]
    shards = tmp_path / "shards"
    assert import_cli(source, shards, *TINY_NONE, "--embedding-column", "vec",
                      "--uri-column", "link") == 0  # fmt: skip
    version = build_version(shards, tmp_path / "index")
    assert_finds_itself(version, expected_uris, np.concatenate(expected_vectors))
    row = version.records.get(version.row_of(item_id(expected_uris[7])) or 0)
    assert (row.caption, json.loads(str(row.metadata))) == ("title 7", {"year": 7})


def test_guessed_columns_caption_vectors_and_duplicate_uris(tmp_path: Path) -> None:
    """`embedding`, `image_path` and `text_embedding` are found without flags; a uri seen
    twice is imported once (the first row)."""
    rng = np.random.default_rng(4)
    vectors, texts = unit(rng, 50), unit(rng, 50)
    uris = [f"img/{i}.jpg" for i in range(50)]
    uris[49] = uris[0]
    text_cells: list[list[float] | None] = [list(t) for t in texts]
    text_cells[3] = None  # a row without a caption vector
    table = pa.table(
        {
            "image_path": uris,
            "embedding": pa.array(list(vectors), type=pa.list_(pa.float32())),
            "text_embedding": pa.array(text_cells, type=pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    shards = tmp_path / "shards"
    assert import_cli(tmp_path / "t.parquet", shards, *TINY_NONE) == 0
    rows = part_rows(shards)
    assert len(rows) == 49
    by_uri = {row["uri"]: row for row in rows}
    assert by_uri["img/3.jpg"]["text_embedding"] is None
    first = np.asarray(by_uri["img/0.jpg"]["embedding"], dtype=np.float32)
    np.testing.assert_allclose(first, vectors[0], atol=1e-3)  # the first row was kept
    manifest = read_manifest(shards)
    assert manifest is not None and manifest.embedding.text_embeddings


# --- reruns --------------------------------------------------------------------------------


def test_reruns_import_only_what_changed_and_record_what_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, shards, index = tmp_path / "cr", tmp_path / "shards", tmp_path / "index"
    expected = clip_retrieval_source(source)
    assert import_cli(source, shards, *TINY_NONE) == 0
    assert (
        "imported 600 vectors (clip-retrieval), unchanged 0, deleted 0" in capsys.readouterr().out
    )
    build_version(shards, index)

    assert import_cli(source, shards, *TINY_NONE) == 0
    assert (
        "imported 0 vectors (clip-retrieval), unchanged 600, deleted 0" in capsys.readouterr().out
    )

    # A new partition, and partition 2 rewritten with 40 of its 100 rows, new vectors.
    rng = np.random.default_rng(9)
    added, added_uris = unit(rng, 30), [f"/new/{i}.jpg" for i in range(30)]
    write_clip_retrieval_part(source, 3, added, {"image_path": added_uris}, digits=2)
    kept_uris = expected.uris[500:540]
    rewritten = unit(rng, 40)
    time.sleep(0.01)  # a new modification time, whatever the clock's resolution
    write_clip_retrieval_part(source, 2, rewritten, {"image_path": kept_uris}, digits=2)
    assert import_cli(source, shards, *TINY_NONE) == 0
    assert (
        "imported 70 vectors (clip-retrieval), unchanged 500, deleted 60" in capsys.readouterr().out
    )

    version = build_version(shards, index, add=True)
    assert_finds_itself(version, kept_uris + added_uris, np.concatenate([rewritten, added]))
    assert_finds_itself(version, expected.uris[:500], expected.vectors[:500])
    for gone in expected.uris[540:]:
        assert version.row_of(item_id(gone)) is None
    manifest = read_manifest(shards)
    assert manifest is not None and [r.embedded for r in manifest.runs] == [600, 0, 70]
    assert manifest.runs[-1].deleted == 60


# --- interrupted runs --------------------------------------------------------------------


def import_command(source: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "clipsearch.cli.main", "--log-level", "WARNING", "import",
        str(source), "--out", str(out), *TINY_NONE, "--shard-size", "500", "--quiet",
    ]  # fmt: skip


def committed_rows(out: Path) -> int:
    manifest = read_manifest(out) if (out / "manifest.json").exists() else None
    return sum(f.rows for f in manifest.files_of(FileKind.EMBEDDINGS)) if manifest else 0


def vectors_by_id(out: Path) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for row in part_rows(out):
        item = int(row["id"])  # type: ignore[call-overload]
        assert item not in found, "a row was imported twice"
        found[item] = np.asarray(row["embedding"], dtype=np.float16).tobytes()
    return found


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip-retrieval output large enough to stop midway: 2 x 60,000 rows."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(5)
    for number in range(2):
        uris = [f"/big/{number}/{i}.jpg" for i in range(60_000)]
        write_clip_retrieval_part(folder, number, unit(rng, 60_000), {"image_path": uris})
    return folder


@pytest.fixture(scope="module")
def big_whole(tmp_path_factory: pytest.TempPathFactory, big_source: Path) -> dict[int, bytes]:
    """What an uninterrupted import of big_source stores, vector by id."""
    whole = tmp_path_factory.mktemp("whole") / "shards"
    assert subprocess.run(import_command(big_source, whole), check=False).returncode == 0
    return vectors_by_id(whole)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_an_interrupted_import_resumes_to_the_uninterrupted_result(
    tmp_path: Path, big_source: Path, big_whole: dict[int, bytes], how: str
) -> None:
    out = tmp_path / "shards"
    process = subprocess.Popen(
        import_command(big_source, out), stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while committed_rows(out) == 0 and process.poll() is None:
        assert time.monotonic() < deadline, "no shard committed within two minutes"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    committed = committed_rows(out)
    assert 0 < committed < 120_000, "the run finished before the signal: make it larger"
    manifest = read_manifest(out)
    assert manifest is not None
    if how == "ctrl-c":
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert "clipsearch: error: interrupted after" in stderr
        assert "hint: run the same command to resume" in stderr
        run = manifest.runs[-1]
        assert run.interrupted and run.embedded == committed  # the record tells the truth

    resumed = subprocess.run(import_command(big_source, out), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"unchanged {committed:,}" in resumed.stdout  # nothing committed is redone
    assert vectors_by_id(out) == big_whole
    on_disk = {p.name for p in out.glob("*.parquet")}
    final = read_manifest(out)
    assert final is not None and on_disk == {f.file for f in final.files}


# --- refusals ----------------------------------------------------------------------------

Setup = Callable[[Path], list[str]]  # makes the source under the folder; returns extra argv


def npy(rows: int = 10, dim: int = DIM, edit: Callable[[np.ndarray], None] | None = None) -> Setup:
    def setup(root: Path) -> list[str]:
        vectors = unit(np.random.default_rng(6), rows, dim)
        if edit:
            edit(vectors)
        (root / "src").mkdir()
        np.save(root / "src" / "a.npy", vectors)
        return []

    return setup


def clip_retrieval(
    rows: int = 10, table_rows: int = 10, text_rows: int | None = None, text_edit: bool = False
) -> Setup:
    def setup(root: Path) -> list[str]:
        rng = np.random.default_rng(7)
        texts = None if text_rows is None else unit(rng, text_rows)
        if texts is not None and text_edit:
            texts[3, 5] = np.inf
        paths = [f"/p/{i}.jpg" for i in range(table_rows)]
        write_clip_retrieval_part(root / "src", 0, unit(rng, rows), {"image_path": paths}, texts)
        return []

    return setup


def parquet(columns: dict[str, pa.Array], *extra: str) -> Setup:
    def setup(root: Path) -> list[str]:
        (root / "src").mkdir()
        pq.write_table(pa.table(columns), root / "src" / "t.parquet")
        return list(extra)

    return setup


def vectors_column(rows: int, nulls: tuple[int, ...] = (), short: int | None = None) -> pa.Array:
    cells: list[list[float] | None] = [list(v) for v in unit(np.random.default_rng(8), rows)]
    for n in nulls:
        cells[n] = None
    if short is not None:
        cells[short] = cells[short][:-1]  # type: ignore[index]
    return pa.array(cells, type=pa.list_(pa.float32()))


def existing(setup: Setup, *first: str) -> Setup:
    """`setup`, and a collection already imported from it with `first` as flags."""

    def with_collection(root: Path) -> list[str]:
        extra = setup(root)
        assert import_cli(root / "src", root / "shards", *TINY_NONE, *first) == 0
        return extra

    return with_collection


def set_row(row: int, column: int, value: float) -> Callable[[np.ndarray], None]:
    def edit(vectors: np.ndarray) -> None:
        vectors[row, column] = value

    return edit


def zero_row(vectors: np.ndarray) -> None:
    vectors[2] = 0.0


@dataclass(frozen=True)
class Refusal:
    name: str
    setup: Setup
    argv: tuple[str, ...]  # after SOURCE --out SHARDS; TINY_NONE unless it names a model
    words: tuple[str, ...]  # in the error line
    hint: tuple[str, ...]  # in the hint line (empty: no hint)


def without_metadata(root: Path) -> list[str]:
    clip_retrieval()(root)
    (root / "src" / "metadata" / "metadata_0.parquet").unlink()
    return []


def empty_folder(root: Path) -> list[str]:
    (root / "src").mkdir()
    return []


def nothing(root: Path) -> list[str]:
    return []


PATHS = pa.array(list("abcde"))
REFUSALS = [
    Refusal(
        "dimension",
        npy(dim=32),
        (),
        ("a.npy: 32-d vectors", "clipsearch-tiny/none makes 64-d"),
        ("--model and --pretrained",),
    ),
    Refusal("a 768-d source", npy(dim=768), (), ("768-d vectors",), ("768-d models: ViT-L-14",)),
    Refusal(
        "NaN",
        npy(edit=set_row(7, 3, np.nan)),
        (),
        ("a.npy row 7", "NaN or infinite"),
        ("fix or drop those rows",),
    ),
    Refusal(
        "infinity in a caption vector",
        clip_retrieval(text_rows=10, text_edit=True),
        (),
        ("text_emb_0.npy row 3", "caption vector holds NaN or infinite"),
        ("fix or drop",),
    ),
    Refusal("zero vector", npy(edit=zero_row), (), ("a.npy row 2", "all zeros"), ("drop",)),
    Refusal(
        "metadata rows",
        clip_retrieval(table_rows=9),
        (),
        ("img_emb_0.npy has 10 rows but", "metadata_0.parquet has 9"),
        ("same run",),
    ),
    Refusal(
        "text_emb rows",
        clip_retrieval(text_rows=11),
        (),
        ("has 10 rows but", "text_emb_0.npy has 11"),
        ("same run",),
    ),
    Refusal(
        "no metadata",
        without_metadata,
        (),
        ("has no metadata/metadata_0.parquet",),
        ("whole clip-retrieval output folder",),
    ),
    Refusal(
        "no uri column",
        parquet({"embedding": vectors_column(5), "label": PATHS}),
        (),
        ("no uri column (looked for image_path, path",),
        ("--uri-column",),
    ),
    Refusal(
        "a named uri column missing",
        parquet({"embedding": vectors_column(5), "path": PATHS}, "--uri-column", "link"),
        (),
        ("no column 'link'",),
        ("--uri-column",),
    ),
    Refusal(
        "an empty uri",
        parquet({"embedding": vectors_column(3), "path": pa.array(["a", None, "c"])}),
        (),
        ("t.parquet row 1: no uri",),
        ("--uri-column names another column",),
    ),
    Refusal(
        "no embedding column",
        parquet({"path": PATHS, "x": pa.array([1, 2, 3, 4, 5])}),
        (),
        ("no embedding column", "x (int64)"),
        ("--embedding-column",),
    ),
    Refusal(
        "a null embedding",
        parquet({"embedding": vectors_column(5, nulls=(2,)), "path": PATHS}),
        (),
        ("t.parquet row 2: no embedding (null)",),
        ("drop the rows",),
    ),
    Refusal(
        "vectors of two lengths",
        parquet({"embedding": vectors_column(5, short=3), "path": PATHS}),
        (),
        ("row 3: embedding holds 63 values, the rows before it 64",),
        ("same dimension",),
    ),
    Refusal(
        "--embedding-column on .npy",
        npy(),
        ("--embedding-column", "vec"),
        ("--embedding-column applies to Parquet sources",),
        (),
    ),
    Refusal(
        "unknown model",
        npy(),
        ("--model", "ViT-Q-99", "--pretrained", "none"),
        ("--model 'ViT-Q-99' is not an OpenCLIP architecture",),
        (),
    ),
    Refusal(
        "unknown tag",
        npy(),
        ("--model", "ViT-B-32", "--pretrained", "no_such_tag"),
        ("neither a pretrained tag of ViT-B-32 nor an existing file",),
        (),
    ),
    Refusal("no such source", nothing, (), ("src: no such file or directory",), ()),
    Refusal(
        "an empty folder",
        empty_folder,
        (),
        ("found no embeddings in this folder",),
        ("clip-retrieval output (a folder with img_emb/)",),
    ),
    Refusal("no vectors", npy(rows=0), (), ("holds no vectors",), ()),
    Refusal(
        "another model's collection",
        existing(npy()),
        ("--model", TINY, "--pretrained", "__checkpoint__"),
        ("refusing to add to", "different models"),
        ("import into a new --out",),
    ),
    Refusal(
        "another vector type",
        existing(npy()),
        ("--float32",),
        ("it stores float16 vectors",),
        ("--float32",),
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[r.name for r in REFUSALS])
def test_refusals_say_what_and_what_to_do_and_write_nothing(
    case: Refusal, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = case.setup(tmp_path)
    shards = tmp_path / "shards"
    before = (shards / "manifest.json").read_bytes() if shards.exists() else None
    argv = [a.replace("__checkpoint__", str(tiny_checkpoint)) for a in case.argv]
    model = [] if "--model" in argv else TINY_NONE
    code = import_cli(tmp_path / "src", shards, *model, *argv, *extra)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("clipsearch: error: ") and "Traceback" not in err
    for words in case.words:
        assert words in lines[0], err
    hint = [line for line in lines if line.startswith("hint: ")]
    for words in case.hint:
        assert hint and words in hint[0], err
    if before is None:
        assert not shards.exists(), "a failed first run left its output folder behind"
    else:
        assert (shards / "manifest.json").read_bytes() == before


def test_the_model_must_be_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npy()(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["import", str(tmp_path / "src"), "--out", str(tmp_path / "shards")])
    assert info.value.code == 2
    assert "--model" in capsys.readouterr().err and not (tmp_path / "shards").exists()


# --- the real clip-retrieval ---------------------------------------------------------------


@pytest.fixture(scope="session")
def clip_retrieval_cli(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Built once into pytest's cache (kept between runs); into a temporary folder when
    the cache is off (-p no:cacheprovider)."""
    from tests.clip_retrieval_venv import clip_retrieval_venv

    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("clip-retrieval-venv") if cache else tmp_path_factory.mktemp("venv")
    return clip_retrieval_venv(folder)


@pytest.fixture(scope="module")
def vit_b_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded random ViT-B-32 weights, for clip-retrieval and clipsearch alike."""
    from tests.conftest import save_random_model

    path = tmp_path_factory.mktemp("vit-b-32") / "vit-b-32.safetensors"
    save_random_model("ViT-B-32", path)
    return path


def run_clip_retrieval(cli: Path, checkpoint: Path, out: Path, *args: str) -> None:
    command = [
        str(cli), "inference", "--output_folder", str(out),
        # all_clip splits MODEL/CHECKPOINT at the first slash: an absolute path keeps its own.
        "--clip_model", f"open_clip:ViT-B-32/{checkpoint}", "--batch_size", "16",
        "--num_prepro_workers", "0", "--enable_wandb", "False", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture
def vit_server(vit_b_32: Path) -> Iterator[Callable[[Path], RunningServer]]:
    from clipsearch.server.app import start
    from clipsearch.server.config import NamedIndex, ServerConfig

    encoder = load_encoder(ModelSpec("ViT-B-32", str(vit_b_32), device="cpu"))
    running: list[RunningServer] = []

    def starter(index: Path) -> RunningServer:
        config = ServerConfig(NamedIndex.of(index), port=0, metrics_port=0)
        running.append(start(config, encoder=encoder))
        return running[-1]

    yield starter
    for server in running:
        server.stop(0)


@pytest.mark.slow
def test_real_clip_retrieval_output_is_served_in_its_own_space(
    tmp_path: Path,
    textile_paths: list[Path],
    photos: dict[str, Image.Image],
    clip_retrieval_cli: Path,
    vit_b_32: Path,
    vit_server: Callable[[Path], RunningServer],
) -> None:
    """`clip-retrieval inference` over a folder of real images (files mode: uris are the
    image paths) with random ViT-B-32 weights; imported as that model, built and served:
    each image's clip-retrieval vector finds that image first with a score of ~1, and the
    image itself, encoded by the server, finds it too (the same space and preprocessing)."""
    images = tmp_path / "images"
    images.mkdir()
    for n, path in enumerate(textile_paths[::10][:150]):
        (images / f"textile-{n:03d}.jpg").write_bytes(path.read_bytes())
    for name, photo in photos.items():
        photo.save(images / f"{name}.jpg", quality=90)
    out = tmp_path / "clip-retrieval-out"
    run_clip_retrieval(clip_retrieval_cli, vit_b_32, out, "--input_dataset", str(images))

    shards, index = tmp_path / "shards", tmp_path / "index"
    assert import_cli(out, shards, "--model", "ViT-B-32", "--pretrained", str(vit_b_32)) == 0
    run_build(BuildConfig(shards, index, eval_queries=20))
    vectors = np.load(out / "img_emb" / "img_emb_0.npy").astype(np.float32)
    paths = pq.read_table(out / "metadata" / "metadata_0.parquet").column("image_path")
    uris = [str(p) for p in paths.to_pylist()]
    assert len(uris) == 155 and set(uris) == {str(p) for p in images.glob("*.jpg")}
    server = vit_server(index)
    with SearchClient(f"127.0.0.1:{server.port}", timeout_s=60) as client:
        for n in range(0, 155, 7):
            hit = client.search(VectorQuery(vectors[n]), top_k=3).hits[0]
            assert hit.uri == uris[n]
            assert hit.score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
            by_image = client.search(ImageQuery(Path(uris[n]).read_bytes()), top_k=3).hits[0]
            assert by_image.uri == uris[n]
            assert by_image.score == pytest.approx(1.0, abs=5e-3)


@pytest.mark.slow
def test_real_clip_retrieval_webdataset_output_keeps_captions_and_metadata(
    tmp_path: Path,
    textile_paths: list[Path],
    clip_retrieval_cli: Path,
    vit_b_32: Path,
    vit_server: Callable[[Path], RunningServer],
) -> None:
    """img2dataset-style webdataset input (jpg + txt + json with url) with captions and
    metadata on: text_emb/ becomes searchable captions, url the uri, json keys metadata."""
    import io
    import tarfile

    tar_path = tmp_path / "00000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for n, path in enumerate(textile_paths[5::40][:40]):
            key = f"{n:09d}"
            sample = {
                "jpg": path.read_bytes(),
                "txt": f"textile sample {n} ({path.parent.name})".encode(),
                "json": json.dumps({"url": f"https://example.org/t/{n}.jpg", "key": key,
                                    "width": 250, "height": 250, "status": "success"}).encode(),
            }  # fmt: skip
            for ext, data in sample.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "clip-retrieval-out"
    run_clip_retrieval(
        clip_retrieval_cli, vit_b_32, out, "--input_dataset", str(tar_path),
        "--input_format", "webdataset", "--enable_metadata", "True",
    )  # fmt: skip

    shards, index = tmp_path / "shards", tmp_path / "index"
    assert import_cli(out, shards, "--model", "ViT-B-32", "--pretrained", str(vit_b_32)) == 0
    run_build(BuildConfig(shards, index, eval_queries=10))
    texts = np.load(out / "text_emb" / "text_emb_0.npy").astype(np.float32)
    vectors = np.load(out / "img_emb" / "img_emb_0.npy").astype(np.float32)
    table = pq.read_table(out / "metadata" / "metadata_0.parquet").to_pylist()
    server = vit_server(index)
    with SearchClient(f"127.0.0.1:{server.port}", timeout_s=60) as client:
        for n, row in enumerate(table):
            hit = client.search(VectorQuery(vectors[n]), top_k=3).hits[0]
            assert (hit.uri, hit.caption) == (row["url"], row["caption"])
            assert hit.score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
            assert json.loads(hit.metadata_json)["key"] == row["key"]
            query = VectorQuery(texts[n])
            by_caption = client.search(query, top_k=3, target=Target.CAPTIONS).hits[0]
            assert by_caption.uri == row["url"]
            assert by_caption.score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
