"""Text queries and image queries get the search settings measured for their own kind.

CLIP's text embeddings sit apart from its image embeddings (the modality gap), so the
build measures recall separately for text queries (the collection's caption embeddings,
else the model's text tower on a shipped prompt set) and image queries (held-out
collection vectors), and the server searches each query with its kind's defaults.

What is checked here, ground truth always from numpy brute force over the vectors the
shards hold:
- on synthetic captions across a modality gap, the build gives text queries more lists
  than image queries, and a text query is searched with them (reaching the target on
  fresh text queries where the image settings fall far short);
- every query type maps to its kind's settings, on the images and on the captions, and
  per-query effort still wins; batches and filtered plans keep them apart;
- text evaluation queries come from captions (tiny model, --embed-captions) or prompts
  (tiny model, no captions), and the figures the manifest reports are those numpy finds;
- a model that cannot be loaded is a warning, never a failure, and text is marked not
  measured; old manifests load with text searched as images;
- through a real server: each kind's settings reach the index, and GetIndexInfo has them.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from bench.synthetic import ClipLikeSpace, write_synthetic_shards
from clipsearch.cli.build import describe
from clipsearch.cli.main import main
from clipsearch.client import SearchClient
from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import (
    EmbeddingFormat,
    FileKind,
    Manifest,
    VectorDtype,
    write_manifest,
)
from clipsearch.collection.shards import embeddings_schema, vector_column, write_shard_file
from clipsearch.encoder import ClipEncoder
from clipsearch.filters import field
from clipsearch.index.manifest import (
    MANIFEST_FILE,
    IndexManifest,
    MeasuredDefaults,
    current_version,
)
from clipsearch.index.version import IndexVersion, VectorIndex
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.indexer.build import text_queries
from clipsearch.models import ModelSpec
from clipsearch.server.app import RunningServer
from clipsearch.server.core.filtering import FilterMasks
from clipsearch.server.core.searching import (
    Effort,
    Planned,
    SearchItem,
    planned,
    search,
    search_batch,
)
from clipsearch.types import (
    ImageQuery,
    ImageUrlQuery,
    ItemQuery,
    Query,
    QueryKind,
    QuerySource,
    SearchOptions,
    SearchQuery,
    Target,
    TextQuery,
    VectorQuery,
)
from tests.conftest import TINY
from tests.served import ServedCollection
from tests.test_captions import current_rows, write_collection
from tests.test_recall import exact_top_k, recall

DIM = 32
K = 10
GAP_ITEMS = 8_000
SPACE = ClipLikeSpace(DIM, clusters=64, seed=3)
CAPTIONED_FORMAT = EmbeddingFormat("synthetic", "none", DIM, None, VectorDtype.FLOAT16, True)


# --- a collection whose captions sit across a modality gap -------------------------------


@dataclass(frozen=True)
class Gapped:
    version: IndexVersion
    index: Path
    stored: np.ndarray  # the image vectors as the shards hold them (float16), by row


def write_captioned_shards(folder: Path, images: np.ndarray, texts: np.ndarray) -> None:
    count = len(images)
    uris = [f"item-{i}" for i in range(count)]
    table = pa.table(
        {
            "id": [item_id(u) for u in uris],
            "uri": uris,
            "embedding": vector_column(images, "float16"),
            "text_embedding": vector_column(texts, "float16"),
            "width": [1] * count,
            "height": [1] * count,
            "content_hash": [""] * count,
            "stamp": ["s"] * count,
            "caption": [f"caption {i}" for i in range(count)],
            "metadata": [json.dumps({"n": i}) for i in range(count)],
        },
        schema=embeddings_schema(CAPTIONED_FORMAT),
    )
    folder.mkdir(parents=True)
    entry = write_shard_file(folder, FileKind.EMBEDDINGS, 0, table, CAPTIONED_FORMAT, 1)
    write_manifest(folder, Manifest(embedding=CAPTIONED_FORMAT).with_file(entry))


@pytest.fixture(scope="module")
def gapped(tmp_path_factory: pytest.TempPathFactory) -> Gapped:
    """8,000 items in IVF128,Flat whose captions lie across a modality gap: measured on
    this data, image queries reach 0.95 at 2 lists, caption queries only at 8 (0.60 at 2)."""
    root = tmp_path_factory.mktemp("gapped")
    images = SPACE.images(GAP_ITEMS, seed=1)
    write_captioned_shards(root / "shards", images, SPACE.texts(GAP_ITEMS, seed=1))
    config = BuildConfig(
        root / "shards", root / "index", index_factory="IVF128,Flat", eval_queries=300
    )
    version = IndexVersion(run_build(config).path)
    stored = images.astype(np.float16).astype(np.float32)
    # Rows are items in shard order here (one shard, nothing removed).
    assert (np.asarray(version.ids) == [item_id(f"item-{i}") for i in range(GAP_ITEMS)]).all()
    return Gapped(version, root / "index", stored)


def searched_recall(
    version: IndexVersion, query: Query, vectors: np.ndarray, truth: np.ndarray
) -> float:
    """Recall@10 of `vectors` searched as the server searches `query`'s kind."""
    plan = Planned(SearchQuery(query), version, 0, "")
    return recall(search(plan, vectors, K).rows, truth)


def test_text_queries_get_the_lists_they_need_and_are_searched_with_them(
    gapped: Gapped,
) -> None:
    m = gapped.version.manifest
    image, text = m.defaults(QueryKind.IMAGE), m.defaults(QueryKind.TEXT)
    assert text.source is QuerySource.CAPTIONS and text.eval_queries == 300
    assert image.source is QuerySource.HELD_OUT
    assert text.reached is not None and image.reached is not None
    assert text.reached.recall_at_10 >= m.target_recall
    assert image.reached.recall_at_10 >= m.target_recall
    # Text needs more lists for the same recall: at the image setting it falls short.
    assert text.default_nprobe >= 2 * image.default_nprobe
    at_image_setting = [p for p in text.recall_curve if p.nprobe == image.default_nprobe]
    assert at_image_setting and at_image_setting[0].recall_at_10 < m.target_recall - 0.1

    # Fresh queries of each kind, the truth by numpy over the stored vectors.
    texts, pictures = SPACE.texts(300, seed=7), SPACE.images(300, seed=8)
    text_truth = exact_top_k(texts, gapped.stored, K)
    image_truth = exact_top_k(pictures, gapped.stored, K)
    as_text = searched_recall(gapped.version, TextQuery("x"), texts, text_truth)
    as_image = searched_recall(gapped.version, VectorQuery(texts[0]), texts, text_truth)
    assert as_text >= m.target_recall - 0.02
    assert as_image < m.target_recall - 0.1  # what text queries got before
    pictures_recall = searched_recall(gapped.version, ImageQuery(b"x"), pictures, image_truth)
    assert pictures_recall >= m.target_recall - 0.02


def test_captions_can_measure_text_queries_without_a_caption_index(
    gapped: Gapped, tmp_path: Path
) -> None:
    """--no-caption-index: the captions still tune text queries, but the version holds no
    caption search, and the image index is planned on the whole budget."""
    shards = gapped.index.parent / "shards"
    config = BuildConfig(shards, tmp_path / "index", index_factory="IVF128,Flat",
                         eval_queries=300, index_captions=False)  # fmt: skip
    version = IndexVersion(run_build(config).path)
    m = version.manifest
    assert version.captions is None and m.captions is None
    assert not [p.name for p in version.path.iterdir() if "caption" in p.name]
    text, image = m.defaults(QueryKind.TEXT), m.defaults(QueryKind.IMAGE)
    assert text.source is QuerySource.CAPTIONS and text.eval_queries == 300
    assert text.reached is not None and text.reached.recall_at_10 >= m.target_recall
    assert text.reached.own_image_at_10 is not None  # each caption's item is known
    assert text.default_nprobe >= 2 * image.default_nprobe
    # The same text settings as when the captions are indexed: the same data decides them.
    assert text.default_nprobe == gapped.version.manifest.defaults(QueryKind.TEXT).default_nprobe

    # Fresh text-like queries reach the target with the version's text settings.
    texts = SPACE.texts(300, seed=9)
    truth = exact_top_k(texts, gapped.stored, K)
    assert searched_recall(version, TextQuery("x"), texts, truth) >= m.target_recall - 0.02


def test_no_caption_index_is_a_build_flag() -> None:
    from clipsearch.cli.main import build_parser

    args = build_parser().parse_args(["build", "shards", "--out", "idx", "--no-caption-index"])
    assert args.index_captions is False
    assert build_parser().parse_args(["build", "shards", "--out", "idx"]).index_captions


def test_every_query_type_maps_to_its_kinds_settings_and_effort_wins(gapped: Gapped) -> None:
    version = gapped.version
    m = version.manifest
    text = Effort(m.defaults(QueryKind.TEXT).default_nprobe,
                  m.defaults(QueryKind.TEXT).rerank_candidates)  # fmt: skip
    image = Effort(m.default_nprobe, m.rerank_candidates)
    assert text != image

    def effort(query: Query, **options: object) -> Effort:
        opts = SearchOptions(**options)  # type: ignore[arg-type]
        return Planned(SearchQuery(query, opts), version, 0, "").effort

    assert effort(TextQuery("a cat")) == text
    vector = gapped.stored[0]
    for query in (ImageQuery(b"jpeg"), ImageUrlQuery("http://x/y.jpg"), ItemQuery(1),
                  VectorQuery(vector)):  # fmt: skip
        assert effort(query) == image
    # Per-query effort overrides either kind's defaults, field by field.
    assert effort(TextQuery("a cat"), nprobe=3) == Effort(3, text.candidates)
    assert effort(VectorQuery(vector), candidates=17) == Effort(image.nprobe, 17)
    # The captions keep their own per kind: text measured on held-out captions, images
    # on the version's image vectors.
    captions = m.captions
    assert captions is not None and captions.image_queries is not None
    assert captions.image_queries.source is QuerySource.IMAGES
    on_captions = captions.defaults(QueryKind.TEXT)
    assert on_captions.source is QuerySource.HELD_OUT and on_captions.reached is not None
    assert effort(TextQuery("a cat"), target=Target.CAPTIONS) == Effort(
        captions.default_nprobe, captions.rerank_candidates
    )
    assert effort(VectorQuery(vector), target=Target.CAPTIONS) == Effort(
        captions.image_queries.default_nprobe, captions.image_queries.rerank_candidates
    )


@pytest.fixture
def index_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int | None, int | None]]:
    """The (nprobe, candidates) of every VectorIndex.search call, in order."""
    calls: list[tuple[int | None, int | None]] = []
    real = VectorIndex.search

    def spy(self: VectorIndex, queries: np.ndarray, k: int, nprobe: int | None = None,
            candidates: int | None = None, allowed: object = None) -> object:  # fmt: skip
        calls.append((nprobe, candidates))
        return real(self, queries, k, nprobe, candidates, allowed)  # type: ignore[arg-type]

    monkeypatch.setattr(VectorIndex, "search", spy)
    return calls


def test_a_batch_of_both_kinds_searches_each_kind_with_its_settings(
    gapped: Gapped, index_calls: list[tuple[int | None, int | None]]
) -> None:
    version = gapped.version
    m = version.manifest
    text = m.defaults(QueryKind.TEXT)
    texts, pictures = SPACE.texts(4, seed=21), SPACE.images(4, seed=22)
    items = [
        SearchItem(Planned(SearchQuery(query), version, 0, ""), vector, K)
        for vector, query in [
            *((t, TextQuery("t")) for t in texts),
            *((p, VectorQuery(p)) for p in pictures),
        ]
    ]
    found = search_batch(items)
    assert sorted(set(index_calls)) == sorted(
        {(text.default_nprobe, text.rerank_candidates), (m.default_nprobe, m.rerank_candidates)}
    )
    assert len(index_calls) == 2  # one call per kind, each kind's queries together
    index_calls.clear()
    for n, vector in enumerate(texts):
        alone = version.search(vector[None, :], K, text.default_nprobe, text.rerank_candidates)
        np.testing.assert_array_equal(found[n].rows, alone.rows[0])
    for n, vector in enumerate(pictures):
        alone = version.search(vector[None, :], K, m.default_nprobe, m.rerank_candidates)
        np.testing.assert_array_equal(found[len(texts) + n].rows, alone.rows[0])


def test_a_filtered_text_query_grows_its_lists_from_the_text_settings(gapped: Gapped) -> None:
    version = gapped.version
    half = field("metadata.n") < GAP_ITEMS // 2  # 4,000 rows: the index, not a scan
    masks = FilterMasks()
    plans = {
        kind: planned(SearchQuery(query, SearchOptions(filter=half)), version, 0, "", masks).plan
        for kind, query in ((QueryKind.TEXT, TextQuery("t")), (QueryKind.IMAGE, ImageQuery(b"")))
    }
    text, image = plans[QueryKind.TEXT], plans[QueryKind.IMAGE]
    assert text is not None and image is not None and not text.exact and not image.exact
    assert text.nprobe is not None and image.nprobe is not None
    assert text.nprobe >= version.manifest.defaults(QueryKind.TEXT).default_nprobe
    assert text.nprobe > image.nprobe
    assert text.candidates == version.manifest.defaults(QueryKind.TEXT).rerank_candidates


# --- where text evaluation queries come from -----------------------------------------------


@dataclass(frozen=True)
class Reported:
    recall_at_10: float
    own_at_10: float
    own_at_10_exact: float


def independent_figures(
    version: IndexVersion,
    images: dict[int, np.ndarray],
    queries: np.ndarray,
    own_items: list[int] | None,
    defaults: MeasuredDefaults,
) -> Reported:
    """Recall@10 of `queries` at `defaults` and how often each one's own item is found,
    the truth by numpy over `images` (item id -> vector as the shards hold it)."""
    rows = np.array([version.row_of(i) for i in images])
    stored = np.stack(list(images.values()))
    depth = min(K, len(stored))
    truth = rows[exact_top_k(queries, stored, depth)]
    found = version.search(queries, K, defaults.default_nprobe or None,
                           defaults.rerank_candidates or None).rows  # fmt: skip
    measured = recall(found[:, :depth], truth)
    if own_items is None:
        return Reported(measured, 0.0, 0.0)
    own = np.array([version.row_of(i) for i in own_items])[:, None]
    return Reported(
        measured, float((found == own).any(axis=1).mean()), float((truth == own).any(axis=1).mean())
    )


def shard_vectors(rows: dict[int, dict[str, object]], column: str) -> dict[int, np.ndarray]:
    return {
        item: np.asarray(row[column], np.float16).astype(np.float32)
        for item, row in rows.items()
        if row[column] is not None
    }


def test_captions_are_the_text_queries_and_their_own_images_are_counted(
    tmp_path: Path,
    photos: dict[str, Image.Image],
    textile_paths: list[Path],
    served_collection: ServedCollection,
) -> None:
    write_collection(tmp_path / "images", photos, textile_paths)
    run_embed(EmbedConfig(SourceSpec(str(tmp_path / "images")), tmp_path / "shards",
                          served_collection.model, quiet=True, embed_captions=True))  # fmt: skip
    built = run_build(BuildConfig(tmp_path / "shards", tmp_path / "index",
                                  index_factory="IVF2,Flat", eval_queries=1000))  # fmt: skip
    version = IndexVersion(built.path)
    text = version.manifest.defaults(QueryKind.TEXT)
    rows = current_rows(tmp_path / "shards")
    captions = shard_vectors(rows, "text_embedding")
    assert text.source is QuerySource.CAPTIONS
    assert text.eval_queries == len(captions) < len(rows)  # every caption, and only those

    figures = independent_figures(
        version, shard_vectors(rows, "embedding"), np.stack(list(captions.values())),
        list(captions), text,
    )  # fmt: skip
    reached = text.reached
    assert reached is not None and reached.own_image_at_10 is not None
    assert reached.recall_at_10 == pytest.approx(figures.recall_at_10, abs=1e-6)
    assert reached.own_image_at_10 == pytest.approx(figures.own_at_10, abs=1e-6)
    assert text.own_image_at_10_exact == pytest.approx(figures.own_at_10_exact, abs=1e-6)
    printed = describe(version.manifest)
    assert f"text queries: {len(captions)} caption embeddings" in printed
    assert "own image in the top 10" in printed


def test_without_captions_the_models_prompts_are_the_text_queries(
    tmp_path: Path, served_collection: ServedCollection, tiny_encoder: ClipEncoder
) -> None:
    prompts = text_queries.prompts()
    names = text_queries.prompt_names()
    assert 300 <= len(prompts) == len(set(prompts)) and len(names) == len(prompts)
    assert all(p == f"a photo of a {n}." for p, n in zip(prompts, names, strict=True))

    built = run_build(BuildConfig(served_collection.shards, tmp_path / "index",
                                  index_factory="IVF2,Flat", eval_queries=1000))  # fmt: skip
    version = IndexVersion(built.path)
    text = version.manifest.defaults(QueryKind.TEXT)
    assert text.source is QuerySource.PROMPTS and text.eval_queries == len(prompts)
    assert text.own_image_at_10_exact is None  # prompts have no known match
    rows = current_rows(served_collection.shards)
    figures = independent_figures(
        version, shard_vectors(rows, "embedding"), tiny_encoder.encode_texts(prompts), None, text
    )
    assert text.reached is not None
    assert text.reached.recall_at_10 == pytest.approx(figures.recall_at_10, abs=1e-6)
    assert f"text queries: {len(prompts)} prompts" in describe(version.manifest)

    # Fewer --eval-queries than prompts: a fixed sample of them.
    fewer = run_build(BuildConfig(served_collection.shards, tmp_path / "fewer", eval_queries=50))
    assert fewer.manifest.defaults(QueryKind.TEXT).eval_queries == 50


# --- when text cannot be measured, and versions from before ---------------------------------


def assert_not_measured(manifest: IndexManifest) -> MeasuredDefaults:
    text = manifest.defaults(QueryKind.TEXT)
    assert text.source is QuerySource.NOT_MEASURED and not text.measured
    assert (text.default_nprobe, text.rerank_candidates) == (
        manifest.default_nprobe,
        manifest.rerank_candidates,
    )
    assert text.recall_curve == [] and text.reached is None
    return text


def test_a_model_that_cannot_be_loaded_is_a_warning_and_text_is_not_measured(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tiny_checkpoint: Path,
    textile_paths: list[Path],
) -> None:
    # Vectors of a model that is not an OpenCLIP one (as bench's synthetic shards are).
    write_synthetic_shards(tmp_path / "shards", SPACE.images(2_000, seed=5))
    with caplog.at_level(logging.WARNING):
        built = run_build(BuildConfig(tmp_path / "shards", tmp_path / "index",
                                      index_factory="IVF16,Flat", eval_queries=100))  # fmt: skip
    text = assert_not_measured(built.manifest)
    assert "synthetic/none" in text.note
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "text queries not measured" in warning and "synthetic/none" in warning
    assert "text queries: not measured" in describe(built.manifest)
    assert main(["versions", str(tmp_path / "index")]) == 0
    listed = capsys.readouterr().out
    assert "image recall@10" in listed and "text not measured" in listed

    # A real model whose weights are no longer on this host.
    weights = tmp_path / "gone.safetensors"
    shutil.copyfile(tiny_checkpoint, weights)
    images = tmp_path / "images"
    images.mkdir()
    for n, path in enumerate(textile_paths[:3]):
        shutil.copyfile(path, images / f"t{n}.jpg")
    run_embed(EmbedConfig(SourceSpec(str(images)), tmp_path / "tiny-shards",
                          ModelSpec(TINY, str(weights), device="cpu"), quiet=True))  # fmt: skip
    weights.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        built = run_build(BuildConfig(tmp_path / "tiny-shards", tmp_path / "tiny-index"))
    assert str(weights) in assert_not_measured(built.manifest).note
    assert any(str(weights) in r.getMessage() for r in caplog.records)


def test_a_manifest_from_before_loads_and_searches_text_as_images(
    gapped: Gapped, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = gapped.version.manifest
    assert IndexManifest.from_json(manifest.to_json()) == manifest  # the new format round-trips
    raw = json.loads(manifest.to_json())
    del raw["text_queries"], raw["captions"]["image_queries"]
    for point in [*raw["recall_curve"], *raw["captions"]["recall_curve"]]:
        del point["own_image_at_10"]
    index = tmp_path / "index"
    shutil.copytree(gapped.index, index)
    path = current_version(index)
    assert path is not None
    (path / MANIFEST_FILE).write_text(json.dumps(raw))  # the manifest is not checksummed

    old = IndexVersion(path)
    assert old.manifest.text_queries is None
    assert_not_measured(old.manifest)
    image = Effort(old.manifest.default_nprobe, old.manifest.rerank_candidates)
    assert Planned(SearchQuery(TextQuery("t")), old, 0, "").effort == image
    captions = old.manifest.captions
    assert captions is not None and captions.image_queries is None
    assert captions.defaults(QueryKind.IMAGE).source is QuerySource.NOT_MEASURED
    on_captions = SearchQuery(VectorQuery(gapped.stored[0]), SearchOptions(target=Target.CAPTIONS))
    assert Planned(on_captions, old, 0, "").effort == Effort(
        captions.default_nprobe, captions.rerank_candidates
    )
    assert main(["versions", str(index)]) == 0
    assert "text not measured" in capsys.readouterr().out


# --- through a real server ------------------------------------------------------------------


@pytest.fixture
def set_apart(served_collection: ServedCollection, tmp_path: Path) -> Iterator[Path]:
    """The served collection in IVF4,Flat, its text settings then set apart from the image
    ones (the build's own choice is tested above), so each kind is seen at the index."""
    index = tmp_path / "index"
    built = run_build(BuildConfig(served_collection.shards, index, index_factory="IVF4,Flat",
                                  eval_queries=100))  # fmt: skip
    m = built.manifest
    text = m.defaults(QueryKind.TEXT)
    assert text.source is QuerySource.PROMPTS
    apart = replace(m, text_queries=replace(
        text, default_nprobe=m.default_nprobe % 4 + 1, rerank_candidates=m.rerank_candidates + 50
    ))  # fmt: skip
    (built.path / MANIFEST_FILE).write_text(apart.to_json())
    yield index


def jpeg(photo: Image.Image) -> bytes:
    buffer = io.BytesIO()
    photo.convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def test_the_server_searches_each_kind_with_its_settings_and_reports_them(
    set_apart: Path,
    start_server: Callable[..., RunningServer],
    index_calls: list[tuple[int | None, int | None]],
    photos: dict[str, Image.Image],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = current_version(set_apart)
    assert path is not None
    version = IndexVersion(path)
    m = version.manifest
    text = m.defaults(QueryKind.TEXT)
    text_effort = (text.default_nprobe, text.rerank_candidates)
    image_effort = (m.default_nprobe, m.rerank_candidates)
    assert text_effort != image_effort
    server = start_server(set_apart)
    with SearchClient(f"127.0.0.1:{server.port}", timeout_s=30) as client:

        def efforts(query: Query, **options: int) -> list[tuple[int | None, int | None]]:
            index_calls.clear()
            assert client.search(query, **options).hits  # type: ignore[arg-type]
            return list(index_calls)

        assert efforts(TextQuery("a red bicycle")) == [text_effort]
        assert efforts(ImageQuery(jpeg(photos["coffee"]))) == [image_effort]
        assert efforts(ItemQuery(int(version.ids[0]))) == [image_effort]
        vector = np.asarray(version.vectors[3], np.float32)
        assert efforts(VectorQuery(vector / np.linalg.norm(vector))) == [image_effort]
        assert efforts(TextQuery("a cat"), nprobe=2, rerank_candidates=7) == [(2, 7)]

        info = client.index_info()
        assert (info.default_nprobe, info.default_candidates) == image_effort
        assert (info.text.nprobe, info.text.candidates) == text_effort
        assert info.text.source is QuerySource.PROMPTS and info.text.measured
        assert info.text.own_image_at_10 is None
        reached = m.reached
        assert reached is not None and info.recall_at_10 == pytest.approx(reached.recall_at_10)
    assert main(["query", "--server", f"127.0.0.1:{server.port}", "--info"]) == 0
    shown = capsys.readouterr().out
    assert f"nprobe {text_effort[0]}, re-rank {text_effort[1]}" in shown
    assert "image recall@10" in shown and "text recall@10" in shown


def test_get_index_info_reports_the_measured_text_defaults(
    client: SearchClient, served_collection: ServedCollection
) -> None:
    path = current_version(served_collection.index)
    assert path is not None
    text = IndexVersion(path).manifest.defaults(QueryKind.TEXT)
    info = client.index_info()
    assert info.text.source is QuerySource.PROMPTS
    assert (info.text.nprobe, info.text.candidates) == (text.default_nprobe,
                                                         text.rerank_candidates)  # fmt: skip
    assert text.reached is not None
    assert info.text.recall_at_10 == pytest.approx(text.reached.recall_at_10)
    assert info.text.recall_at_1 == pytest.approx(text.reached.recall_at_1)
