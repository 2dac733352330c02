"""Property-based fuzzing of every RPC against a real server: whatever a client sends, the
answer is OK or a client-error status (never INTERNAL or UNKNOWN), and the server stays
healthy. Each test prints how many cases it ran."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipsearch.server.app import RunningServer, start
from clipsearch.server.config import NamedIndex, ServerConfig
from clipsearch.v1 import search_pb2 as pb
from clipsearch.v1 import search_pb2_grpc
from tests.served import ServedCollection

pytestmark = pytest.mark.slow
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same cases on every run, so a failure reproduces
)
CASES: Counter[str] = Counter()
CODES: Counter[str] = Counter()

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300) | st.sampled_from(
    ["", " ", "a" * 10_001, "🚀" * 500, "\x00", "a photo of a cat"]
)
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Mostly in range (so requests get past validation to the model and the index), sometimes not.
in_range = st.integers(min_value=0, max_value=1001)
uint32 = st.one_of(in_range, in_range, in_range, st.integers(min_value=0, max_value=2**32 - 1))


@st.composite
def images(draw: st.DrawFn) -> bytes:
    """Random bytes, or real images of random size, mode and format, possibly cut short."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2000))
    mode = draw(st.sampled_from(["RGB", "RGBA", "L", "1", "P", "CMYK", "I;16"]))
    size = (draw(st.integers(1, 80)), draw(st.integers(1, 80)))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]))
    buffer = io.BytesIO()
    image = Image.new(mode, size, draw(st.integers(0, 255)))
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode
        image.convert("RGB").save(buffer, "PNG")
    data = buffer.getvalue()
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


@st.composite
def search_requests(draw: st.DrawFn) -> pb.SearchRequest:
    request = pb.SearchRequest(
        top_k=draw(uint32),
        omit_metadata=draw(st.booleans()),
        effort=pb.SearchEffort(nprobe=draw(uint32), rerank_candidates=draw(uint32)),
    )
    kind = draw(st.sampled_from(["text", "image", "embedding", "item_id", "image_url", None]))
    if kind == "text":
        request.text = draw(texts)
    elif kind == "image":
        request.image = draw(images())
    elif kind == "embedding":
        size = draw(st.sampled_from([0, 1, 63, 64, 65, 1000]))
        request.embedding.values.extend(draw(st.lists(floats, min_size=size, max_size=size)))
    elif kind == "item_id":
        request.item_id = draw(ints)
    elif kind == "image_url":
        request.image_url = draw(texts | st.just("http://169.254.169.254/"))
    return request


@pytest.fixture(scope="module")
def fuzzed(
    served_collection: ServedCollection, tiny_encoder: object
) -> Iterator[tuple[RunningServer, grpc.Channel]]:
    config = ServerConfig(NamedIndex.of(served_collection.index), port=0, metrics_port=None)
    server = start(config, encoder=tiny_encoder)  # type: ignore[arg-type]
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield server, channel
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()
    server.stop(0)
    print(f"\nfuzzing: {sum(CASES.values())} requests, by RPC: {dict(CASES)}")
    print(f"answers (parsed requests): {dict(CODES)}")


def call(channel: grpc.Channel, method: str, request: object) -> grpc.StatusCode:
    CASES[method] += 1
    stub = search_pb2_grpc.SearchServiceStub(channel)
    try:
        getattr(stub, method)(request, timeout=60)
        code = grpc.StatusCode.OK
    except grpc.RpcError as err:
        assert err.code() not in SERVER_FAULTS, f"{method}: {err.code()}: {err.details()}"
        code = err.code()
    CODES[code.name] += 1
    return code


@FUZZ
@given(request=search_requests())
def test_search(fuzzed: tuple[RunningServer, grpc.Channel], request: pb.SearchRequest) -> None:
    call(fuzzed[1], "Search", request)


@FUZZ
@given(queries=st.lists(search_requests(), max_size=6))
def test_batch_search(
    fuzzed: tuple[RunningServer, grpc.Channel], queries: list[pb.SearchRequest]
) -> None:
    call(fuzzed[1], "BatchSearch", pb.BatchSearchRequest(queries=queries))


@FUZZ
@given(texts=st.lists(texts, max_size=5), images=st.lists(images(), max_size=3))
def test_embed(
    fuzzed: tuple[RunningServer, grpc.Channel], texts: list[str], images: list[bytes]
) -> None:
    call(fuzzed[1], "Embed", pb.EmbedRequest(texts=texts, images=images))


@FUZZ
@given(
    image=images(),
    labels=st.lists(texts, max_size=6),
    templates=st.lists(texts | st.sampled_from(["{}", "a {} b {}", "{x}{}", "%s {}"]), max_size=3),
)
def test_classify(
    fuzzed: tuple[RunningServer, grpc.Channel],
    image: bytes,
    labels: list[str],
    templates: list[str],
) -> None:
    request = pb.ClassifyRequest(image=image, labels=labels, templates=templates)
    call(fuzzed[1], "Classify", request)


@FUZZ
@given(
    method=st.sampled_from(["Search", "BatchSearch", "Embed", "Classify", "GetIndexInfo"]),
    raw=st.binary(max_size=500),
)
def test_raw_bytes(fuzzed: tuple[RunningServer, grpc.Channel], method: str, raw: bytes) -> None:
    CASES[f"raw {method}"] += 1
    send: Callable[..., object] = fuzzed[1].unary_unary(f"/clipsearch.v1.SearchService/{method}")
    try:
        send(raw, timeout=60)
    except grpc.RpcError as err:
        assert err.code() not in SERVER_FAULTS, f"{method}: {err.code()}: {err.details()}"


def test_valid_images_of_every_kind_are_answered(
    fuzzed: tuple[RunningServer, grpc.Channel],
) -> None:
    """The fuzzer's real images, uncut, must all be searchable (not merely not crash)."""
    for mode in ["RGB", "RGBA", "L", "1", "P", "CMYK", "I;16", "F"]:
        buffer = io.BytesIO()
        Image.new(mode, (17, 9)).save(buffer, "TIFF")
        assert call(fuzzed[1], "Search", pb.SearchRequest(image=buffer.getvalue())) == (
            grpc.StatusCode.OK
        ), mode
