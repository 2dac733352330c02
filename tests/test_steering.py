"""Steering what a search returns, against a real server: a score cut-off, pages that
concatenate to the unpaged result and outlive a hot reload, and near-duplicates folded."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from clipsearch.server.core.pages import PageToken
from PIL import Image

from clipsearch.client import Collapse, ImageQuery, RpcError, SearchClient, TextQuery
from clipsearch.index.manifest import VERSIONS_DIR
from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
from clipsearch.server.app import RunningServer
from tests.served import ServedCollection


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
