"""Steering what a search returns, against a real server: a score cut-off, pages that
concatenate to the unpaged result and outlive a hot reload, and near-duplicates folded."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from PIL import Image

from bench.synthetic import ClipLikeSpace, write_synthetic_shards
from clipsearch.client import (
    Collapse,
    ImageQuery,
    RpcError,
    SearchClient,
    SearchOptions,
    SearchQuery,
    TextQuery,
    VectorQuery,
    search_request,
)
from clipsearch.collection.manifest import EmbeddingFormat, VectorDtype
from clipsearch.encoder import ClipEncoder
from clipsearch.filters import field
from clipsearch.index.manifest import VERSIONS_DIR, current_version
from clipsearch.index.version import IndexVersion
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.server.app import RunningServer
from clipsearch.server.core.pages import PageToken
from tests.served import ServedCollection
from tests.synthetic import clustered_vectors


def _pages(client: SearchClient, query: TextQuery, size: int) -> list[list[int]]:
    pages, token = [], ""
    while True:
        result = client.search(query, top_k=size, page_token=token)
        pages.append([hit.id for hit in result.hits])
        token = result.next_page_token
        if not token:
            return pages


def test_min_score_cuts_where_the_scores_fall(client: SearchClient) -> None:
    everything = client.search(TextQuery("a cup of coffee"), top_k=25).hits
    cut = everything[len(everything) // 2].score
    kept = client.search(TextQuery("a cup of coffee"), top_k=25, min_score=cut).hits
    assert kept and all(hit.score >= cut for hit in kept)
    assert [h.id for h in kept] == [h.id for h in everything if h.score >= cut]
    nothing = client.search(TextQuery("a cup of coffee"), top_k=25, min_score=0.9999).hits
    assert all(hit.score >= 0.9999 for hit in nothing)


@pytest.mark.parametrize("size", [1, 4, 7])
def test_pages_concatenate_to_the_unpaged_result(client: SearchClient, size: int) -> None:
    query = TextQuery("a striped textile")
    whole = [hit.id for hit in client.search(query, top_k=25).hits]
    pages = _pages(client, query, size)
    assert [item for page in pages for item in page] == whole  # no gap, no repeat
    assert all(len(page) == size for page in pages[:-1])
    assert len(pages) == -(-len(whole) // size)


def test_a_page_token_survives_a_hot_reload_and_binds_its_search(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    index = served_collection.copy_index(tmp_path / "index")
    server = start_server(index, reload_interval_s=0.05)
    query = TextQuery("a photo of a rocket")
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        whole = client.search(query, top_k=10)
        first = client.search(query, top_k=5)
        newer = run_build(BuildConfig(served_collection.shards, index, eval_queries=20)).manifest
        deadline = time.monotonic() + 10
        while client.index_info().index_version != newer.version:
            assert time.monotonic() < deadline, "the new version was not picked up"
            time.sleep(0.05)
        second = client.search(query, top_k=5, page_token=first.next_page_token)
        assert second.index_version == first.index_version != newer.version
        assert [h.id for h in first.hits + second.hits] == [h.id for h in whole.hits]

        with pytest.raises(RpcError) as other_query:
            client.search(TextQuery("a cat"), top_k=5, page_token=first.next_page_token)
        assert other_query.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "another search" in other_query.value.details
        with pytest.raises(RpcError) as garbage:
            client.search(query, top_k=5, page_token="not-a-token")
        assert garbage.value.code is grpc.StatusCode.INVALID_ARGUMENT
        gone = PageToken.decode(first.next_page_token)
        foreign = PageToken("v000099", gone.offset, gone.query).encode()
        assert not (index / VERSIONS_DIR / "v000099").exists()
        with pytest.raises(RpcError) as expired:
            client.search(query, top_k=5, page_token=foreign)
        assert expired.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert "without page_token" in expired.value.details


@pytest.fixture(scope="module")
def near_duplicates(
    tmp_path_factory: pytest.TempPathFactory,
    served_collection: ServedCollection,
    photos: dict[str, Image.Image],
) -> Path:
    """The five photos, three of them with planted near-duplicates: a re-encode at low
    JPEG quality, a slight crop, a half-size copy."""
    root = tmp_path_factory.mktemp("dups")
    images = root / "images"
    images.mkdir()
    for name, photo in photos.items():
        photo.save(images / f"{name}.jpg", quality=92)
        if name in ("astronaut", "chelsea", "rocket"):
            buffer = io.BytesIO()
            photo.save(buffer, "JPEG", quality=35)
            (images / f"{name}-reencoded.jpg").write_bytes(buffer.getvalue())
            w, h = photo.size
            photo.crop((w // 25, h // 25, w - w // 25, h - h // 25)).save(
                images / f"{name}-cropped.jpg"
            )
            photo.resize((w // 2, h // 2)).save(images / f"{name}-small.jpg")
    model = served_collection.model
    run_embed(EmbedConfig(SourceSpec(str(images)), root / "shards", model, quiet=True))
    run_build(BuildConfig(root / "shards", root / "index", eval_queries=10))
    return root


def test_collapsing_folds_planted_near_duplicates(
    near_duplicates: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(near_duplicates / "index")
    photo = (near_duplicates / "images" / "chelsea.jpg").read_bytes()
    # Random-init weights put even unrelated photos close together; variants of one photo
    # sit above 0.99 here, different photos below it.
    fold = Collapse(threshold=0.99, with_ids=True)
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        plain = client.search(ImageQuery(photo), top_k=14)
        folded = client.search(ImageQuery(photo), top_k=5, collapse=fold)
    assert len(plain.hits) == 14
    assert len(folded.hits) == 5  # still top_k distinct hits: five photos exist
    stems = [Path(h.uri).stem.split("-")[0] for h in folded.hits]
    assert sorted(stems) == sorted(["astronaut", "coffee", "chelsea", "rocket",
                                    "hubble_deep_field"])  # fmt: skip

    def group(uri: str) -> str:
        return Path(uri).stem.split("-")[0]

    for hit in folded.hits:
        expected = 3 if group(hit.uri) in ("astronaut", "chelsea", "rocket") else 0
        assert hit.duplicates == expected == len(hit.duplicate_ids), hit
        variants = {h.id for h in plain.hits if group(h.uri) == group(hit.uri)}
        assert set(hit.duplicate_ids) | {hit.id} == variants
    assert folded.hits[0].uri.endswith("chelsea.jpg")  # the best of its group is kept


# --- filters through the server --------------------------------------------------------

FILTERED_N = 40_000  # above the exact-scan threshold at the larger selectivities
FILTERED_FACTORY = "IVF128,PQ16x4fs"  # IVF with compact codes, as large collections get


@pytest.fixture(scope="module")
def filterable(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: ClipEncoder) -> Path:
    """An IVF index of CLIP-like vectors in the tiny model's space, whose metadata.n is
    the row's number: `metadata.n < X` lets exactly X rows through."""
    root = tmp_path_factory.mktemp("filterable")
    info = tiny_encoder.info
    fmt = EmbeddingFormat(
        info.model, info.pretrained, info.dim, info.preprocess, VectorDtype.FLOAT16, False
    )
    write_synthetic_shards(root / "shards", clustered_vectors(FILTERED_N, info.dim), fmt=fmt)
    ivf = BuildConfig(root / "shards", root / "index", index_factory=FILTERED_FACTORY)
    run_build(replace(ivf, eval_queries=200))
    return root / "index"


def _exact_filtered(index: Path, query: np.ndarray, passes: np.ndarray, k: int) -> list[int]:
    """Brute force in the test: the k best rows among those passing, by their stored
    float16 vectors, as item ids."""
    version = IndexVersion(current_version(index))  # type: ignore[arg-type]
    rows = np.flatnonzero(passes & (np.asarray(version.ids) >= 0))
    scores = np.asarray(version.vectors[rows], dtype=np.float32) @ query
    best = rows[np.argsort(-scores, kind="stable")[:k]]
    return [int(i) for i in np.asarray(version.ids)[best]]


@pytest.mark.parametrize("matching", [20_000, 4_000, 400, 40, 5])
def test_filtered_search_finds_what_exact_filtered_search_finds(
    filterable: Path,
    start_server: Callable[..., RunningServer],
    matching: int,
) -> None:
    server = start_server(filterable)
    version = IndexVersion(current_version(filterable))  # type: ignore[arg-type]
    assert version.manifest.nlist > 0, "the index must be IVF for this test to mean much"
    numbers = np.arange(FILTERED_N)  # metadata.n, row by row (rows follow the shards)
    rng = np.random.default_rng(matching)
    # Held-out vectors of the collection's own space (the same clusters, other draws).
    queries = ClipLikeSpace(version.manifest.dim, 64, seed=0).images(30, seed=11)
    found = hits = 0
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        for query in queries:
            result = client.search(
                VectorQuery(query), top_k=10, filter=field("metadata.n") < matching
            )
            expected = _exact_filtered(filterable, query, numbers < matching, 10)
            got = [hit.id for hit in result.hits]
            assert len(got) == min(10, matching)  # k hits whenever k items match
            rows = [version.row_of(i) for i in got]
            assert all(row is not None and numbers[row] < matching for row in rows)
            found += len(set(got) & set(expected))
            hits += len(expected)
        if matching <= 1000:  # a value list (at most 1024 values): rows spread out
            spread = [int(n) for n in rng.choice(FILTERED_N, size=matching, replace=False)]
            passes = np.isin(numbers, spread)
            in_list = field("metadata.n").is_in(spread)
            result = client.search(VectorQuery(queries[0]), top_k=10, filter=in_list)
            expected = _exact_filtered(filterable, queries[0], passes, 10)
            assert [h.id for h in result.hits] == expected
    assert found / hits >= 0.95, f"recall@10 {found / hits:.3f} with {matching} matching"


def test_filters_combine_and_a_filter_matching_nothing_returns_no_hits(
    filterable: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(filterable)
    query = VectorQuery(clustered_vectors(1, 64, seed=3)[0])
    wanted = ((field("metadata.n") >= 100) & (field("metadata.n") < 200)) | field("uri").prefix(
        "item-3999"
    )
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        hits = client.search(query, top_k=50, filter=wanted).hits
        none = client.search(query, top_k=10, filter=field("metadata.n") > 10**9).hits
        info = client.index_info()
    version = IndexVersion(current_version(filterable))  # type: ignore[arg-type]
    for hit in hits:
        n = int(np.arange(FILTERED_N)[version.row_of(hit.id)])  # type: ignore[index]
        assert 100 <= n < 200 or hit.uri.startswith("item-3999"), hit
    assert len(hits) == 50 and none == []
    assert {f.name for f in info.fields} >= {"uri", "caption", "width", "metadata.n"}


BAD_FILTERS = {
    "an unknown field": (field("metadata.nope").equals(1), "metadata.nope"),
    "text for a number": (field("metadata.n") >= "many", "number"),
    "a malformed date": (field("embedded_at") >= "yesterday", "date"),
    "prefix on a number": (field("metadata.n").prefix("1"), "prefix"),
}


@pytest.mark.parametrize("name", list(BAD_FILTERS))
def test_a_bad_filter_is_invalid_on_both_faces(
    name: str, filterable: Path, start_server: Callable[..., RunningServer]
) -> None:
    bad, words = BAD_FILTERS[name]
    server = start_server(filterable, http_port=0)
    query = VectorQuery(clustered_vectors(1, 64, seed=5)[0])
    with SearchClient(f"127.0.0.1:{server.port}") as client, pytest.raises(RpcError) as caught:
        client.search(query, filter=bad)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "filter" in caught.value.details and words in caught.value.details
    body = json_format.MessageToDict(search_request(SearchQuery(query, SearchOptions(filter=bad))))
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/v1/search",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(request)
    assert http_error.value.code == 400
    assert json.loads(http_error.value.read())["error"]["message"] == caught.value.details
