"""End to end: a real gRPC server on a loopback port, the real client, a real index."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from clipsearch.client import (
    ImageQuery,
    ItemQuery,
    RpcError,
    SearchClient,
    SearchOptions,
    SearchQuery,
    TextQuery,
    VectorQuery,
)
from clipsearch.encoder import ClipEncoder
from clipsearch.index.manifest import current_version
from clipsearch.index.version import IndexVersion
from clipsearch.server.app import RunningServer
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.conftest import bad_inputs
from tests.served import ServedCollection

PARITY = 1e-4


def indexed_images(collection: ServedCollection) -> list[Path]:
    return sorted(collection.images.rglob("*.jpg"))


def test_an_indexed_image_as_the_query_comes_back_first(
    client: SearchClient, served_collection: ServedCollection
) -> None:
    for path in indexed_images(served_collection)[::5]:
        result = client.search(ImageQuery(path.read_bytes()), top_k=3)
        assert result.hits[0].uri == str(path)
        assert result.hits[0].score == pytest.approx(1.0, abs=2e-3)
        assert result.index_version.startswith("v")


def test_text_query_returns_top_k_hits_with_metadata(client: SearchClient) -> None:
    result = client.search(TextQuery("a cat lying down"), top_k=7)
    assert len(result.hits) == 7
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert len({hit.id for hit in result.hits}) == 7
    assert all(hit.uri.endswith(".jpg") for hit in result.hits)
    assert result.timing.total_ms >= result.timing.encode_ms > 0
    captioned = client.search(TextQuery("a photo"), top_k=100).hits
    assert {h.caption for h in captioned} >= {"a photo: chelsea", "a photo: coffee"}
    bare = client.search(TextQuery("a cat lying down"), top_k=7, with_metadata=False)
    assert [h.id for h in bare.hits] == [h.id for h in result.hits]
    assert all(h.uri == "" for h in bare.hits)


def test_embeddings_equal_the_encoder_and_search_by_vector(
    client: SearchClient, tiny_encoder: ClipEncoder, served_collection: ServedCollection
) -> None:
    image = indexed_images(served_collection)[3]
    texts = ["a red bicycle in the snow", "textile"]
    embedded = client.embed(texts=texts, images=[image.read_bytes()])
    np.testing.assert_allclose(embedded.texts, tiny_encoder.encode_texts(texts), atol=PARITY)
    np.testing.assert_allclose(
        embedded.images, tiny_encoder.encode_images([image.read_bytes()]), atol=PARITY
    )
    by_vector = client.search(VectorQuery(embedded.images[0] * 3.0), top_k=5)  # any length
    by_image = client.search(ImageQuery(image.read_bytes()), top_k=5)
    assert [h.id for h in by_vector.hits] == [h.id for h in by_image.hits]


def test_more_like_an_item_excludes_the_item(client: SearchClient) -> None:
    first = client.search(TextQuery("cloth"), top_k=1).hits[0]
    like = client.search(ItemQuery(first.id), top_k=5)
    assert len(like.hits) == 5
    assert first.id not in {h.id for h in like.hits}


def test_batch_search_answers_like_single_searches(
    client: SearchClient, served_collection: ServedCollection
) -> None:
    images = indexed_images(served_collection)[:6]
    queries = [SearchQuery(ImageQuery(p.read_bytes()), SearchOptions(top_k=4)) for p in images]
    queries.append(SearchQuery(TextQuery("a rocket"), SearchOptions(top_k=2)))
    batch = client.batch_search(queries)
    assert len(batch) == len(queries)
    for query, answer in zip(queries, batch, strict=True):
        single = client.search(query.query, top_k=query.options.top_k)
        assert [h.id for h in answer.hits] == [h.id for h in single.hits]
    assert batch[0].hits[0].uri == str(images[0])


def test_classify_gives_probabilities_best_first(
    client: SearchClient, tiny_encoder: ClipEncoder, served_collection: ServedCollection
) -> None:
    image = (served_collection.images / "chelsea.jpg").read_bytes()
    labels = ["cat", "rocket", "cup of coffee"]
    scores = client.classify(image, labels, templates=["a photo of a {}.", "a picture of {}"])
    assert sorted(s.label for s in scores) == sorted(labels)
    assert sum(s.probability for s in scores) == pytest.approx(1.0, abs=1e-5)
    assert [s.probability for s in scores] == sorted((s.probability for s in scores), reverse=True)
    # The same arithmetic done by hand with the encoder.
    prompts = tiny_encoder.encode_texts(
        [
            t.replace("{}", label)
            for label in labels
            for t in ("a photo of a {}.", "a picture of {}")
        ]
    )
    per_label = prompts.reshape(3, 2, -1).mean(1)
    per_label /= np.linalg.norm(per_label, axis=1, keepdims=True)
    similarity = per_label @ tiny_encoder.encode_images([image])[0]
    by_label = {s.label: s.similarity for s in scores}
    for label, expected in zip(labels, similarity, strict=True):
        assert by_label[label] == pytest.approx(float(expected), abs=PARITY)


def test_index_info_describes_the_served_version(
    client: SearchClient, served_collection: ServedCollection, tiny_encoder: ClipEncoder
) -> None:
    info = client.index_info()
    path = current_version(served_collection.index)
    assert path is not None
    manifest = IndexVersion(path).manifest
    assert (info.model, info.pretrained, info.dim) == (manifest.model, manifest.pretrained, 64)
    assert (info.index_version, info.count, info.factory) == (
        manifest.version,
        manifest.count,
        manifest.factory,
    )
    assert info.recall_at_10 == pytest.approx(manifest.reached.recall_at_10)  # type: ignore[union-attr]
    assert info.device == "cpu" and info.refused_version == ""


def _search(**fields: object) -> pb.SearchRequest:
    return pb.SearchRequest(**fields)  # type: ignore[arg-type]


def _vector(value: float, dim: int = 64) -> pb.Vector:
    return pb.Vector(values=[value] * dim)


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
BAD_REQUESTS: list[tuple[str, pb.SearchRequest, grpc.StatusCode, str]] = [
    ("no query", _search(), INVALID, "set exactly one"),
    ("empty text", _search(text="  "), INVALID, "text is empty"),
    ("huge text", _search(text="a" * 20_000), INVALID, "characters"),
    ("empty image", _search(image=b""), INVALID, "image is empty"),
    ("not an image", _search(image=b"hello"), INVALID, "not an image"),
    ("truncated", _search(image=bad_inputs()["truncated.jpg"]), INVALID, "truncated"),
    ("too many pixels", _search(image=bad_inputs()["bomb.png"]), INVALID, "too large"),
    ("wrong dim", _search(embedding=_vector(0.1, 63)), INVALID, "dimension 64"),
    ("nan", _search(embedding=_vector(float("nan"))), INVALID, "NaN"),
    ("inf", _search(embedding=_vector(float("inf"))), INVALID, "infinite"),
    ("zero vector", _search(embedding=_vector(0.0)), INVALID, "zero length"),
    ("top_k too big", _search(text="cat", top_k=5000), INVALID, "top_k"),
    (
        "nprobe too big",
        _search(text="cat", effort=pb.SearchEffort(nprobe=10**6)),
        INVALID,
        "nprobe",
    ),
    ("unknown item", _search(item_id=12345), NOT_FOUND, "item_id 12345"),
]


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [pytest.param(r, c, m, id=name) for name, r, c, m in BAD_REQUESTS],
)
def test_bad_search_requests_get_a_status_that_says_what_to_fix(
    server: RunningServer, request_: pb.SearchRequest, code: grpc.StatusCode, message: str
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Search(request_, timeout=10)
        assert caught.value.code() == code
        assert message in caught.value.details()
        assert stub.Search(pb.SearchRequest(text="still fine"), timeout=10).hits


BAD_OTHER_CALLS: list[tuple[str, str, object, str]] = [
    ("empty batch", "BatchSearch", pb.BatchSearchRequest(), "queries is empty"),
    (
        "bad query in batch",
        "BatchSearch",
        pb.BatchSearchRequest(queries=[_search(text="a"), _search()]),
        "queries[1].query",
    ),
    ("embed nothing", "Embed", pb.EmbedRequest(), "no inputs"),
    ("embed bad image", "Embed", pb.EmbedRequest(images=[b"xx"]), "images[0]"),
    ("one label", "Classify", pb.ClassifyRequest(image=b"x", labels=["cat"]), "at least two"),
    ("no image", "Classify", pb.ClassifyRequest(labels=["cat", "dog"]), "image is empty"),
    (
        "bad template",
        "Classify",
        pb.ClassifyRequest(image=b"x", labels=["a", "b"], templates=["no slot"]),
        "templates[0]",
    ),
    ("repeated label", "Classify", pb.ClassifyRequest(image=b"x", labels=["a", "a"]), "duplicates"),
]


@pytest.mark.parametrize(
    ("method", "request_", "message"),
    [pytest.param(m, r, msg, id=name) for name, m, r, msg in BAD_OTHER_CALLS],
)
def test_bad_calls_of_other_rpcs_are_invalid_arguments(
    server: RunningServer, method: str, request_: object, message: str
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            getattr(stub, method)(request_, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in caught.value.details()


def test_oversized_messages_and_full_queues_are_refused(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    from clipsearch.server.core.config import BatchingConfig

    server = start_server(
        served_collection.index,
        max_message_bytes=64 * 1024,
        batching=BatchingConfig(max_queue=3),
    )
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(RpcError) as big:
            client.search(ImageQuery(b"\xff" * 100_000))
        assert big.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        queries = [SearchQuery(TextQuery(f"query {i}")) for i in range(5)]
        with pytest.raises(RpcError) as full:
            client.batch_search(queries)
        assert full.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in full.value.details
        assert client.batch_search(queries[:3])


def test_a_passed_deadline_is_deadline_exceeded_and_the_server_carries_on(
    client: SearchClient, served_collection: ServedCollection
) -> None:
    images = [p.read_bytes() for p in indexed_images(served_collection)] * 8
    hurried = SearchClient(client.target, timeout_s=0.001)
    with hurried, pytest.raises(RpcError) as caught:
        hurried.embed(images=images[:200])
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert client.search(TextQuery("fine")).hits


def test_health_and_reflection(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "clipsearch.v1.SearchService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "clipsearch.v1.SearchService" in services
        assert "grpc.health.v1.Health" in services


def test_with_wait_and_no_index_health_is_not_serving_until_one_is_published(
    tmp_path: Path, served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    empty = tmp_path / "index"
    empty.mkdir()
    server = start_server(empty, wait_for_index=True)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with SearchClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(RpcError) as caught:
                client.search(TextQuery("cat"))
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert "clipsearch build" in caught.value.details
            assert client.embed(texts=["works without an index"]).texts.shape == (1, 64)
            served_collection.copy_index(tmp_path / "copy")
            (empty / "versions").symlink_to(tmp_path / "copy" / "versions")
            (empty / "CURRENT").write_text((tmp_path / "copy" / "CURRENT").read_text())
            assert client.reload().changed
            assert client.search(TextQuery("cat")).hits
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_metrics_count_requests_by_rpc_and_status(
    server: RunningServer, client: SearchClient
) -> None:
    client.search(TextQuery("cat"))
    with pytest.raises(RpcError):
        client.search(TextQuery(""))
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read().decode()
    assert 'clipsearch_requests_total{code="OK",face="grpc",rpc="Search"} 1.0' in text
    assert 'clipsearch_requests_total{code="INVALID_ARGUMENT",face="grpc",rpc="Search"} 1.0' in text
    assert 'clipsearch_batch_size_count{of="clipsearch-tiny",stage="text"}' in text
    assert "clipsearch_queue_depth" in text and "clipsearch_index_vectors" in text
    info = client.index_info()
    line = f'clipsearch_index_version_info{{index="index",version="{info.index_version}"}} 1.0'
    assert line in text


def test_search_results_carry_json_metadata(client: SearchClient) -> None:
    hit = client.search(TextQuery("textile"), top_k=1).hits[0]
    json.loads(hit.metadata_json or "{}")  # valid JSON (or empty)


def test_bytes_that_are_not_a_request_are_invalid_not_internal(server: RunningServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        raw = channel.unary_unary("/clipsearch.v1.SearchService/Search")
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\xff\xff\xff\xff garbage", timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid clipsearch.v1.SearchRequest" in caught.value.details()
        stub = search_pb2_grpc.SearchServiceStub(channel)
        assert stub.Search(pb.SearchRequest(text="fine"), timeout=10).hits


def test_health_command_exit_codes(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from clipsearch.cli.main import main

    assert main(["health", "--server", f"127.0.0.1:{server.port}"]) == 0
    assert "SERVING" in capsys.readouterr().out
    assert main(["health", "--server", "127.0.0.1:1", "--timeout", "1"]) == 1


def test_probe_port_serves_health_only_with_liveness_before_readiness(
    tmp_path: Path, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(tmp_path, health_port=0, wait_for_index=True)  # alive, not ready
    assert server.health_port
    with grpc.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        ready = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        alive = health.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
        assert ready.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert alive.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            search_pb2_grpc.SearchServiceStub(channel).GetIndexInfo(
                pb.GetIndexInfoRequest(), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
