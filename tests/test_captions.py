"""Caption search (Target.CAPTIONS): the build indexes the captions embedded with
`--embed-captions`, the server searches them, and `--add` keeps them right.

The tiny model has random weights, so its image and text towers are not aligned: nothing
here claims that a photo's caption is semantically the nearest. What holds with any
weights, and what these tests check:
- a caption's own text, embedded again, is its own nearest caption (score ~1);
- for any query (text or image), caption hits are the captioned items ranked by the
  cosine similarity of their caption's embedding to the query, exactly as numpy ranks
  the `text_embedding` column of the shards (the collection is small: exact search).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from bench.synthetic import ClipLikeSpace
from clipsearch.client import Collapse, ImageQuery, RpcError, SearchClient, Target, TextQuery
from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import (
    EmbeddingFormat,
    FileKind,
    Manifest,
    VectorDtype,
    read_manifest,
    write_manifest,
)
from clipsearch.collection.shards import embeddings_schema, vector_column, write_shard_file
from clipsearch.filters import field
from clipsearch.index.manifest import (
    CAPTIONS_INDEX_FILE,
    CAPTIONS_IVFDATA_FILE,
    CAPTIONS_ROWS_FILE,
    CAPTIONS_VECTORS_FILE,
    MANIFEST_FILE,
    IndexManifest,
    current_version,
    file_checksums,
)
from clipsearch.index.version import IndexLoadError, IndexVersion
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.indexer.build.captions import budget_share, rows_of
from clipsearch.indexer.build.job import BuildKind
from clipsearch.server.app import RunningServer
from clipsearch.server.core.filter_plan import FilteredPlan
from clipsearch.server.core.searching import Planned, search
from clipsearch.types import SearchOptions, SearchQuery, VectorQuery
from tests.served import ServedCollection

PHOTO_CAPTIONS = {
    "astronaut": "an astronaut in a white space suit",
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a ginger cat lying down",
    "rocket": "a rocket on the launch pad",
    "hubble_deep_field": "stars and galaxies in deep space",
    "chelsea-copy": "the same cat, photographed again",  # a near-duplicate image
}
TEXTILES = 8
UNCAPTIONED = {"textile-6", "textile-7"}  # items without a caption: never caption hits


def textile_caption(n: int) -> str:
    return f"a woven textile, pattern number {n}"


# --- a real captioned collection -------------------------------------------------------


@dataclass(frozen=True)
class Captioned:
    images: Path
    shards: Path
    index: Path
    embed: EmbedConfig

    def shard_rows(self) -> dict[int, dict[str, object]]:
        """Each item's current row of the shards (the latest file wins), by id."""
        return current_rows(self.shards)


def current_rows(shards: Path) -> dict[int, dict[str, object]]:
    manifest = read_manifest(shards)
    assert manifest is not None
    rows: dict[int, dict[str, object]] = {}
    for entry in sorted(manifest.files, key=lambda f: f.seq):
        table = pq.read_table(shards / entry.file)
        for row in table.to_pylist():
            if entry.kind is FileKind.DELETIONS:
                rows.pop(row["id"], None)
            elif entry.kind is FileKind.EMBEDDINGS:
                rows[row["id"]] = row
    return rows


def write_collection(
    images: Path, photos: dict[str, Image.Image], textile_paths: list[Path]
) -> None:
    images.mkdir(parents=True)
    for name, caption in PHOTO_CAPTIONS.items():
        photo = photos[name.removesuffix("-copy")]
        photo.save(images / f"{name}.jpg", quality=80 if name.endswith("-copy") else 92)
        (images / f"{name}.txt").write_text(caption)
        (images / f"{name}.json").write_text(json.dumps({"kind": "photo"}))
    for n, path in enumerate(textile_paths[::250][:TEXTILES]):
        shutil.copyfile(path, images / f"textile-{n}.jpg")
        if f"textile-{n}" not in UNCAPTIONED:
            (images / f"textile-{n}.txt").write_text(textile_caption(n))
        (images / f"textile-{n}.json").write_text(json.dumps({"kind": "textile", "n": n}))


@pytest.fixture(scope="module")
def captioned(
    tmp_path_factory: pytest.TempPathFactory,
    photos: dict[str, Image.Image],
    textile_paths: list[Path],
    served_collection: ServedCollection,
) -> Captioned:
    root = tmp_path_factory.mktemp("captioned")
    write_collection(root / "images", photos, textile_paths)
    embed = EmbedConfig(
        SourceSpec(str(root / "images")), root / "shards", served_collection.model,
        quiet=True, embed_captions=True,
    )  # fmt: skip
    run_embed(embed)
    run_build(BuildConfig(root / "shards", root / "index", eval_queries=20))
    return Captioned(root / "images", root / "shards", root / "index", embed)


def unit(vector: object) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32)
    return v / np.linalg.norm(v)


def expected_hits(
    rows: dict[int, dict[str, object]], query: np.ndarray, wanted: Callable[[dict], bool] = bool
) -> list[tuple[int, float]]:
    """Captioned items best first by their caption's similarity to `query`, as stored
    (float16), computed here in numpy."""
    scored = [
        (item, float(np.asarray(row["text_embedding"], np.float16).astype(np.float32) @ query))
        for item, row in rows.items()
        if row["text_embedding"] is not None and wanted(row)
    ]
    return sorted(scored, key=lambda pair: -pair[1])


def client_of(server: RunningServer) -> SearchClient:
    return SearchClient(f"127.0.0.1:{server.port}", timeout_s=30)


# --- the build -----------------------------------------------------------------------


def test_the_build_indexes_every_live_caption_and_maps_it_to_its_item(
    captioned: Captioned,
) -> None:
    path = current_version(captioned.index)
    assert path is not None
    version = IndexVersion(path)
    m = version.manifest
    rows = captioned.shard_rows()
    with_caption = {i for i, r in rows.items() if r["text_embedding"] is not None}
    assert len(rows) == len(PHOTO_CAPTIONS) + TEXTILES
    assert len(with_caption) == len(rows) - len(UNCAPTIONED)
    assert m.captions is not None and m.captions.count == len(with_caption)
    assert m.captions.factory == "Flat" and m.captions.rerank_candidates == 0
    reached = m.captions.reached
    assert reached is not None and reached.recall_at_10 == 1.0 and m.captions.eval_queries > 0
    for name in (CAPTIONS_INDEX_FILE, CAPTIONS_VECTORS_FILE, CAPTIONS_ROWS_FILE):
        assert name in m.files  # verified at load like every other file
    captions = version.captions
    assert captions is not None
    found = set()
    for caption_row, item_row in enumerate(np.asarray(captions.item_rows)):
        item = int(version.ids[item_row])
        found.add(item)
        shard_row = rows[item]
        assert version.records.get(int(item_row)).caption == shard_row["caption"]
        np.testing.assert_array_equal(
            np.asarray(captions.vectors[caption_row]),
            np.asarray(shard_row["text_embedding"], np.float16),
        )
    assert found == with_caption


def test_the_caption_index_shares_the_memory_budget_by_vectors() -> None:
    # (budget, images, captions) -> (the images' share, the captions')
    table = [
        ((1000, 100, 0), (1000, 0)),
        ((1000, 100, 100), (500, 500)),
        ((1000, 300, 100), (750, 250)),
        ((1001, 1, 1), (501, 500)),  # nothing lost to rounding
    ]
    for (budget, images, captions), shares in table:
        assert budget_share(budget, images, captions) == shares


def test_caption_rows_find_their_items_among_live_rows() -> None:
    ids = np.array([7, -1, 3, 9, -1, 5], dtype=np.int64)
    assert rows_of(np.array([9, 5, 7]), ids).tolist() == [3, 5, 0]
    assert rows_of(np.empty(0, np.int64), ids).tolist() == []
    with pytest.raises(RuntimeError, match="no live item row"):
        rows_of(np.array([4]), ids)


# --- serving -------------------------------------------------------------------------


def test_a_captions_own_text_finds_it_first(
    captioned: Captioned, start_server: Callable[..., RunningServer]
) -> None:
    rows = captioned.shard_rows()
    with client_of(start_server(captioned.index)) as client:
        for item, row in rows.items():
            if row["caption"] is None:
                continue
            hits = client.search(TextQuery(str(row["caption"])), 3, target=Target.CAPTIONS).hits
            first = hits[0]
            assert (first.id, first.caption, first.uri) == (item, row["caption"], row["uri"])
            assert json.loads(first.metadata_json) == json.loads(str(row["metadata"]))
            assert first.score > 0.999  # the same text through the same tower
            assert all(h.score < first.score for h in hits[1:])


@pytest.mark.parametrize("kind", ["text", "image"])
def test_caption_hits_are_items_ranked_by_their_captions_similarity(
    captioned: Captioned, start_server: Callable[..., RunningServer], kind: str
) -> None:
    """ "Which captions match this text", "which caption fits this photo": every captioned
    item, in the order of its caption's cosine similarity to the query."""
    rows = captioned.shard_rows()
    photo = (captioned.images / "rocket.jpg").read_bytes()
    with client_of(start_server(captioned.index)) as client:
        query: TextQuery | ImageQuery
        if kind == "text":
            query = TextQuery("a photo of something in space")
            vector = client.embed(texts=[query.text]).texts[0]
        else:
            query, vector = ImageQuery(photo), client.embed(images=[photo]).images[0]
        hits = client.search(query, 50, target=Target.CAPTIONS).hits
        images = client.search(query, 50).hits
    expected = expected_hits(rows, unit(vector))
    assert [h.id for h in hits] == [item for item, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-4)
    assert {h.id for h in images} == set(rows)  # images find uncaptioned items too
    assert not {item_id_of(rows, name) for name in UNCAPTIONED} & {h.id for h in hits}


def test_a_batch_mixing_targets_searches_each_its_own(
    captioned: Captioned, start_server: Callable[..., RunningServer]
) -> None:
    """Queries batched together with the same settings but different targets."""
    query = TextQuery("a ginger cat lying down")
    targets = [Target.IMAGES, Target.CAPTIONS, Target.IMAGES, Target.CAPTIONS]
    batch = [SearchQuery(query, SearchOptions(top_k=5, target=t)) for t in targets]
    with client_of(start_server(captioned.index)) as client:
        together = client.batch_search(batch)
        alone = {t: client.search(query, 5, target=t).hits for t in set(targets)}
    for target, result in zip(targets, together, strict=True):
        assert [h.id for h in result.hits] == [h.id for h in alone[target]]
        # Texts encoded in one batch differ from texts encoded alone by float rounding.
        np.testing.assert_allclose(
            [h.score for h in result.hits], [h.score for h in alone[target]], atol=1e-5
        )
    assert [h.id for h in alone[Target.IMAGES]] != [h.id for h in alone[Target.CAPTIONS]]


def item_id_of(rows: dict[int, dict[str, object]], stem: str) -> int:
    return next(i for i, r in rows.items() if Path(str(r["uri"])).stem == stem)


def test_filters_pages_and_min_score_work_on_captions(
    captioned: Captioned, start_server: Callable[..., RunningServer]
) -> None:
    rows = captioned.shard_rows()
    query = TextQuery("a woven textile")
    textiles = field("metadata.kind").equals("textile")
    with client_of(start_server(captioned.index)) as client:
        vector = unit(client.embed(texts=[query.text]).texts[0])
        filtered = client.search(query, 50, filter=textiles, target=Target.CAPTIONS).hits
        expected = expected_hits(rows, vector, lambda r: "textile" in str(r["metadata"]))
        assert [h.id for h in filtered] == [item for item, _ in expected]
        assert len(filtered) == TEXTILES - len(UNCAPTIONED)

        everything = client.search(query, 50, target=Target.CAPTIONS).hits
        whole = [h.id for h in everything]
        pages, token = [], ""
        while True:
            page = client.search(query, 5, target=Target.CAPTIONS, page_token=token)
            pages.append([h.id for h in page.hits])
            if not (token := page.next_page_token):
                break
        assert [item for page in pages for item in page] == whole
        assert len(pages) == -(-len(whole) // 5)
        first = client.search(query, 5, target=Target.CAPTIONS)
        with pytest.raises(RpcError) as other:  # a caption page does not continue images
            client.search(query, 5, page_token=first.next_page_token)
        assert other.value.code is grpc.StatusCode.INVALID_ARGUMENT

        cut = everything[len(everything) // 2].score
        kept = client.search(query, 50, min_score=cut, target=Target.CAPTIONS).hits
        assert [h.id for h in kept] == [h.id for h in everything if h.score >= cut]
        assert 0 < len(kept) < len(everything)


def test_collapsing_caption_hits_folds_near_duplicate_images(
    captioned: Captioned, start_server: Callable[..., RunningServer]
) -> None:
    """Hits are items: near-duplicates are folded by their images (chelsea and its
    re-encoded copy, captioned differently), as in an image search."""
    rows = captioned.shard_rows()
    photos = field("metadata.kind").equals("photo")
    fold = Collapse(threshold=0.99, with_ids=True)
    query = TextQuery(PHOTO_CAPTIONS["chelsea"])
    with client_of(start_server(captioned.index)) as client:
        plain = client.search(query, 10, filter=photos, target=Target.CAPTIONS).hits
        folded = client.search(query, 10, filter=photos, collapse=fold, target=Target.CAPTIONS)
    assert len(plain) == len(PHOTO_CAPTIONS) and len(folded.hits) == len(PHOTO_CAPTIONS) - 1
    chelsea, copy = item_id_of(rows, "chelsea"), item_id_of(rows, "chelsea-copy")
    assert folded.hits[0].id == chelsea and folded.hits[0].duplicate_ids == (copy,)
    assert [h.id for h in folded.hits] == [h.id for h in plain if h.id != copy]


def test_without_caption_embeddings_captions_are_refused_and_info_says_so(
    captioned: Captioned,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    with client_of(start_server(served_collection.index)) as client:
        assert client.index_info().captions is False
        assert client.search(TextQuery("a cat"), 3).hits  # images are searchable
        with pytest.raises(RpcError) as refused:
            client.search(TextQuery("a cat"), 3, target=Target.CAPTIONS)
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "no captions indexed" in refused.value.details
    assert "clipsearch embed --embed-captions" in refused.value.details
    with client_of(start_server(captioned.index)) as client:
        assert client.index_info().captions is True


# --- --add ---------------------------------------------------------------------------


def test_add_keeps_the_captions_right(
    tmp_path: Path,
    captioned: Captioned,
    textile_paths: list[Path],
    start_server: Callable[..., RunningServer],
) -> None:
    """An IVF version (so --add appends rows) whose collection then loses an item, changes
    a caption, loses a caption and gains a captioned item."""
    images = tmp_path / "images"
    shutil.copytree(captioned.images, images)
    embed = replace(captioned.embed, source=SourceSpec(str(images)), out=tmp_path / "shards")
    run_embed(embed)
    before = current_rows(embed.out)
    first = run_build(BuildConfig(embed.out, tmp_path / "index", index_factory="IVF2,Flat",
                                  eval_queries=10))  # fmt: skip
    (images / "textile-0.jpg").unlink()
    (images / "textile-0.txt").unlink()
    (images / "coffee.txt").write_text("a mug of black coffee")
    (images / "rocket.txt").unlink()
    shutil.copyfile(textile_paths[1], images / "newcomer.jpg")
    (images / "newcomer.txt").write_text("a textile added later")
    run_embed(embed)

    added = run_build(BuildConfig(embed.out, tmp_path / "index", add=True, eval_queries=10))

    assert added.kind is BuildKind.APPENDED and first.manifest.captions is not None
    rows = current_rows(embed.out)
    captions = added.manifest.captions
    assert captions is not None
    assert captions.count == sum(r["text_embedding"] is not None for r in rows.values())
    # One captioned item deleted, one caption removed, one captioned item added.
    assert captions.count == first.manifest.captions.count - 1
    version = IndexVersion(added.path)
    assert version.captions is not None
    for caption_row, item_row in enumerate(np.asarray(version.captions.item_rows)):
        row = rows[int(version.ids[item_row])]
        assert version.records.get(int(item_row)).caption == row["caption"]
        np.testing.assert_array_equal(
            np.asarray(version.captions.vectors[caption_row]),
            np.asarray(row["text_embedding"], np.float16),
        )
    with client_of(start_server(tmp_path / "index")) as client:
        gone = {item_id_of(before, "textile-0"), item_id_of(rows, "rocket")}
        for text, stem in [("a mug of black coffee", "coffee"), ("a textile added later",
                                                                   "newcomer")]:  # fmt: skip
            hits = client.search(TextQuery(text), 50, target=Target.CAPTIONS).hits
            assert hits[0].id == item_id_of(rows, stem) and hits[0].score > 0.999
            assert not gone & {h.id for h in hits}
            assert len(hits) == captions.count
        old = client.search(TextQuery(PHOTO_CAPTIONS["coffee"]), 3, target=Target.CAPTIONS)
        assert old.hits[0].score < 0.999  # the old caption is no longer indexed


# --- the manifest and loading --------------------------------------------------------


def test_the_manifest_round_trips_and_versions_without_captions_load(
    captioned: Captioned, tmp_path: Path
) -> None:
    path = current_version(captioned.index)
    assert path is not None
    manifest = IndexVersion(path).manifest
    assert IndexManifest.from_json(manifest.to_json()) == manifest
    old = tmp_path / "old"
    shutil.copytree(path, old)
    for name in (CAPTIONS_INDEX_FILE, CAPTIONS_VECTORS_FILE, CAPTIONS_ROWS_FILE):
        (old / name).unlink()
    raw = json.loads(manifest.to_json())
    del raw["captions"]  # as written before caption search
    raw["files"] = file_checksums(old)
    (old / MANIFEST_FILE).write_text(json.dumps(raw))
    version = IndexVersion(old)
    assert version.manifest.captions is None and version.captions is None


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("flip", f"{CAPTIONS_VECTORS_FILE} does not match its checksum"),
        ("missing", f"{CAPTIONS_INDEX_FILE} is missing"),
        ("rows", f"{CAPTIONS_ROWS_FILE} names rows the version does not have"),
    ],
)
def test_damaged_caption_files_are_refused(
    captioned: Captioned, tmp_path: Path, damage: str, says: str
) -> None:
    path = current_version(captioned.index)
    assert path is not None
    copy = tmp_path / "v"
    shutil.copytree(path, copy)
    if damage == "flip":
        data = bytearray((copy / CAPTIONS_VECTORS_FILE).read_bytes())
        data[len(data) * 2 // 3] ^= 0x10
        (copy / CAPTIONS_VECTORS_FILE).write_bytes(bytes(data))
    elif damage == "missing":
        (copy / CAPTIONS_INDEX_FILE).unlink()
    else:  # consistent checksums, inconsistent content: the load checks catch it
        rows = np.load(copy / CAPTIONS_ROWS_FILE)
        np.save(copy / CAPTIONS_ROWS_FILE, rows + 1000)
        manifest = IndexManifest.from_json((copy / MANIFEST_FILE).read_text())
        (copy / MANIFEST_FILE).write_text(replace(manifest, files=file_checksums(copy)).to_json())
    with pytest.raises(IndexLoadError, match=says):
        IndexVersion(copy)


# --- a caption set large enough for an IVF index --------------------------------------

DIM = 32
FORMAT = EmbeddingFormat("synthetic", "none", DIM, None, VectorDtype.FLOAT16, True)


@dataclass(frozen=True)
class Synthetic:
    version: IndexVersion
    shards: Path
    texts: np.ndarray  # per item: its caption vector (NaN rows: no caption)
    space: ClipLikeSpace


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    """7,000 items, 6,000 of them captioned, under a budget that rules out exact search."""
    root = tmp_path_factory.mktemp("synthetic-captions")
    space = ClipLikeSpace(DIM, clusters=64, seed=3)
    count = 7_000
    images, texts = space.images(count, seed=1), space.texts(count, seed=1)
    captioned = np.arange(count) % 7 != 0
    uris = [f"item-{i}" for i in range(count)]
    text_column = vector_column(texts, "float16")
    table = pa.table(
        {
            "id": [item_id(u) for u in uris],
            "uri": uris,
            "embedding": vector_column(images, "float16"),
            "text_embedding": pa.FixedSizeListArray.from_arrays(
                text_column.values, DIM, mask=pa.array(~captioned)
            ),
            "width": [1] * count,
            "height": [1] * count,
            "content_hash": [""] * count,
            "stamp": ["s"] * count,
            "caption": [f"caption {i}" if captioned[i] else None for i in range(count)],
            "metadata": [json.dumps({"n": i}) for i in range(count)],
        },
        schema=embeddings_schema(FORMAT),
    )
    shards = root / "shards"
    shards.mkdir()
    entry = write_shard_file(shards, FileKind.EMBEDDINGS, 0, table, FORMAT, 1)
    write_manifest(shards, Manifest(embedding=FORMAT).with_file(entry))
    built = run_build(BuildConfig(shards, root / "index", memory_budget=1_000_000,
                                  eval_queries=300))  # fmt: skip
    stored = np.where(captioned[:, None], texts.astype(np.float16).astype(np.float32), np.nan)
    return Synthetic(IndexVersion(built.path), shards, stored, space)


def test_a_large_caption_set_gets_a_planned_measured_ivf_index(synthetic: Synthetic) -> None:
    m = synthetic.version.manifest
    captions = m.captions
    assert captions is not None and captions.count == 6_000
    assert captions.factory.startswith("IVF") and captions.nlist > 1
    assert captions.rerank_candidates > 0 and captions.eval_queries == 300
    reached = captions.reached
    assert reached is not None and reached.recall_at_10 >= m.target_recall
    # The reported recall holds for held-out caption-like queries, measured here.
    queries = synthetic.space.texts(500, seed=9)
    version = synthetic.version
    index = version.captions
    assert index is not None
    found = version.item_ids(index.items_of(index.search(queries, 10).rows))
    scores = queries @ np.nan_to_num(synthetic.texts).T
    scores[:, np.isnan(synthetic.texts[:, 0])] = -np.inf  # no caption: never a caption hit
    truth_rows = np.argsort(-scores, axis=1)[:, :10]
    truth = np.array([item_id(f"item-{i}") for i in range(len(synthetic.texts))])[truth_rows]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= reached.recall_at_10 - 0.03


def test_filtered_caption_search_through_the_index_misses_nothing(synthetic: Synthetic) -> None:
    """A filter letting most items through: the index with an ID selector over caption
    rows (the items' mask mapped through the caption->item map), completed exactly."""
    version = synthetic.version
    captions = version.captions
    assert captions is not None
    numbers = np.array([version.records.get(r).uri.removeprefix("item-") for r in
                        range(version.manifest.rows)], dtype=int)  # fmt: skip
    mask = numbers % 3 != 0
    allowed = captions.allowed(mask)
    assert len(allowed) == int((mask & ~np.isnan(synthetic.texts[numbers, 0])).sum())
    # The selector path, whatever the planner's threshold for an exact scan.
    plan = FilteredPlan(exact=False, nprobe=captions.default_nprobe)
    candidates = np.flatnonzero(mask & ~np.isnan(synthetic.texts[numbers, 0]))
    recalls = []
    for query in synthetic.space.texts(20, seed=11):
        planned = Planned(
            SearchQuery(VectorQuery(query), SearchOptions(top_k=10, target=Target.CAPTIONS)),
            version, 0, "test", allowed, plan,
        )  # fmt: skip
        found = search(planned, query[None, :], 10)
        rows = found.rows[0]
        assert (rows >= 0).all() and mask[rows].all()  # item rows that pass the filter
        exact = synthetic.texts[numbers[rows]] @ query
        np.testing.assert_allclose(found.scores[0], exact, atol=1e-5)  # caption scores
        truth = candidates[np.argsort(-(synthetic.texts[numbers[candidates]] @ query))[:10]]
        recalls.append(len(set(rows) & set(truth)) / 10)
    assert np.mean(recalls) >= 0.9


def test_on_disk_caption_lists_load_after_the_folder_moves(
    synthetic: Synthetic, tmp_path: Path
) -> None:
    built = run_build(BuildConfig(synthetic.shards, tmp_path / "index", on_disk=True,
                                  memory_budget=600_000, eval_queries=100))  # fmt: skip
    assert (built.path / CAPTIONS_IVFDATA_FILE).exists()
    assert CAPTIONS_IVFDATA_FILE in built.manifest.files
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "index", moved)
    version = IndexVersion(moved / "versions" / built.manifest.version)
    captions = version.captions
    assert captions is not None and captions.nlist > 1
    query = np.asarray(captions.vectors[123], np.float32)[None, :]
    found = captions.search(query, 1, nprobe=captions.nlist)
    assert found.rows[0, 0] == 123 and found.scores[0, 0] == pytest.approx(1.0, abs=1e-3)
