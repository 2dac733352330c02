"""The HTTP face under abuse, against a real server on a loopback port with real clients:
the same limits as gRPC, idle and slow connections, clients that hang up, malformed
bodies, concurrency, over-large bodies, the OpenAPI description and the metrics."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import selectors
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing

import grpc
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clipsearch.client import ImageQuery, RpcError, SearchClient, TextQuery
from clipsearch.server.admission.url_fetch import UrlFetchConfig
from clipsearch.server.app import RunningServer
from clipsearch.server.config import HttpSettings
from clipsearch.server.core.batcher import Batcher
from clipsearch.server.core.encoding import Encoding
from clipsearch.v1 import search_pb2 as pb
from tests.conftest import TINY
from tests.served import ServedCollection
from tests.test_http import base_url, post

# Bounds on waiting for something the server must do; never assertions about speed.
PATIENCE_S = 10.0
IDLE_CONNECTIONS = 200
POST_ROUTES = ("/v1/embeddings", "/v1/search", "/v1/classify")


@pytest.fixture
def http_server(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> RunningServer:
    return start_server(served_collection.index, http_port=0)


def send(
    server: RunningServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict]:  # type: ignore[type-arg]
    """Any bytes as a body, on a connection of its own; the status and the JSON answer."""
    with closing(http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)) as conn:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())


def embed_body(inputs: str | list[str]) -> dict[str, object]:
    return {"model": TINY, "input": inputs}


def assert_openai_error(status: int, body: dict, expected: int) -> str:  # type: ignore[type-arg]
    """The status, and OpenAI's error shape; returns the message."""
    assert status == expected, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if expected < 500:
        assert error["type"] in (
            "invalid_request_error", "authentication_error", "permission_error",
            "not_found_error", "rate_limit_error",
        )  # fmt: skip
    return str(error["message"])


def scrape(server: RunningServer, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples named `name` on the server's /metrics, by the values of `labels`."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url) as response:
        text = response.read().decode()
    return {
        tuple(sample.labels[label] for label in labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def request_counts(server: RunningServer) -> dict[tuple[str, ...], float]:
    """Calls answered, by (rpc, code, face)."""
    return scrape(server, "clipsearch_requests_total", "rpc", "code", "face")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {PATIENCE_S} s")
        time.sleep(0.02)


# --- 1. the same limits as gRPC -------------------------------------------------------------


def test_http_refuses_what_grpc_refuses_with_the_same_message(http_server: RunningServer) -> None:
    too_many = [f"text {n}" for n in range(257)]
    too_long = ["fine", "x" * 10_001]
    with SearchClient(f"127.0.0.1:{http_server.port}", timeout_s=30) as client:
        grpc_messages = []
        for texts in (too_many, too_long):
            with pytest.raises(RpcError) as refused:
                client.embed(texts=texts)
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
            grpc_messages.append(refused.value.details)
    http_messages = []
    for texts in (too_many, too_long):
        status, body = post(http_server, "/v1/embeddings", embed_body(texts))
        message = assert_openai_error(status, body, 400)
        assert body["error"]["type"] == "invalid_request_error"
        http_messages.append(message)
    assert "257 inputs, at most 256 per call" in grpc_messages[0]
    assert http_messages[0] == grpc_messages[0]
    # Each face names the field its own way; the rest of the message is the same.
    assert grpc_messages[1].startswith("texts[1] has 10001 characters, at most 10000")
    assert http_messages[1].startswith("input[1] has 10001 characters, at most 10000")
    assert http_messages[1].removeprefix("input[1]") == grpc_messages[1].removeprefix("texts[1]")


def test_too_many_image_urls_are_refused_before_any_is_fetched(
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    urls = UrlFetchConfig(enabled=True, allowed_hosts=("images.invalid",))
    server = start_server(served_collection.index, http_port=0, image_urls=urls)
    fetched: list[str] = []
    fetch = server.service.encoding.fetch_image

    def recording_fetch(url: str) -> bytes:
        fetched.append(url)
        return fetch(url)

    monkeypatch.setattr(server.service.encoding, "fetch_image", recording_fetch)
    many = [f"http://images.invalid/{n}.jpg" for n in range(257)]
    status, body = post(server, "/v1/embeddings", embed_body(many))
    message = assert_openai_error(status, body, 400)
    assert "257 inputs, at most 256 per call" in message
    assert fetched == []
    # One URL is fetched, and fails (the host does not exist): the count was the refusal.
    status, body = post(server, "/v1/embeddings", embed_body(many[:1]))
    assert assert_openai_error(status, body, 503).startswith("image_url: ")
    assert fetched == many[:1]


# --- 2. idle and slow connections -------------------------------------------------------------


def open_idle_connections(server: RunningServer, stack: ExitStack) -> list[socket.socket]:
    """Three quarters connect and send nothing; the rest finish one request and keep the
    connection open."""
    port = server.http_port
    assert port is not None
    sockets = []
    for n in range(IDLE_CONNECTIONS):
        if n % 4:
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), 30))
        else:
            conn = stack.enter_context(closing(http.client.HTTPConnection("127.0.0.1", port, 30)))
            conn.request("GET", "/v1/models")
            response = conn.getresponse()
            assert response.status == 200 and not response.will_close
            response.read()
            assert conn.sock is not None
            sock = conn.sock
        sockets.append(sock)
    return sockets


def is_open(sock: socket.socket) -> bool:
    """True while the server has neither closed the connection nor sent anything on it."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(30)
    return False


def assert_served(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=base_url(server) + "/v1", api_key="x", max_retries=0)
    assert len(client.embeddings.create(model=TINY, input="a new client").data) == 1
    status, found = post(server, "/v1/search", {"text": "a cat", "top_k": 2})
    assert status == 200 and len(found["hits"]) == 2


def test_idle_connections_do_not_stop_new_clients(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(
        served_collection.index, http_port=0, http=HttpSettings(idle_timeout_s=600)
    )
    with ExitStack() as stack:
        idle = open_idle_connections(server, stack)
        assert_served(server)
        assert all(is_open(sock) for sock in idle)  # still held while the new client was served


def test_idle_connections_are_closed_after_the_idle_timeout(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(served_collection.index, http_port=0, http=HttpSettings(idle_timeout_s=1))
    with ExitStack() as stack, selectors.DefaultSelector() as selector:
        idle = open_idle_connections(server, stack)
        assert_served(server)
        for sock in idle:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + PATIENCE_S
        closed = 0
        while closed < len(idle) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=deadline - time.monotonic()):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                assert ready.recv(1) == b""  # closed, with nothing sent
                selector.unregister(ready)
                closed += 1
        assert closed == len(idle), f"{len(idle) - closed} idle connections still open"


def test_a_client_sending_its_headers_a_byte_at_a_time_is_closed(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(served_collection.index, http_port=0, http=HttpSettings(idle_timeout_s=1))
    assert server.http_port is not None
    request = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", server.http_port), 30) as sock:
        sock.settimeout(0.3)  # the pace of the bytes, not a bound on the server
        closed = False
        for byte in request:  # 150 bytes, 45 s: far past the 1 s idle timeout
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
            if closed:
                break
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "the server waited for the whole slow request"


# --- 3. a client that hangs up has its work dropped -------------------------------------------


def test_work_of_a_client_that_hangs_up_is_dropped(
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hold, stays, gone = "hold the encoder", "a client that stays", "a client that hangs up"
    encoded: list[str] = []
    holding, release = threading.Event(), threading.Event()
    liveness: dict[str, Callable[[], bool] | None] = {}
    encode_texts = Encoding._encode_texts_now
    submit = Batcher.submit

    def recording_encode(self: Encoding, texts: list[str]) -> list[np.ndarray]:
        encoded.extend(texts)
        if hold in texts:  # keep the text batcher busy, so later texts queue
            holding.set()
            release.wait(PATIENCE_S * 3)
        return encode_texts(self, texts)

    def recording_submit(
        self: Batcher,  # type: ignore[type-arg]
        items: Sequence[object],
        deadline: float | None = None,
        is_active: Callable[[], bool] | None = None,
    ) -> list[object]:
        for item in items:
            if isinstance(item, str):
                liveness[item] = is_active
        return list(submit(self, items, deadline, is_active))

    # On the class, before the server starts: its batcher binds the method at start.
    monkeypatch.setattr(Encoding, "_encode_texts_now", recording_encode)
    monkeypatch.setattr(Batcher, "submit", recording_submit)
    server = start_server(served_collection.index, http_port=0)
    assert server.http_port is not None
    with ThreadPoolExecutor(2) as pool:
        try:
            held = pool.submit(post, server, "/v1/embeddings", embed_body(hold))
            assert holding.wait(PATIENCE_S), "the first request never reached the encoder"
            body = json.dumps(embed_body(gone)).encode()
            with socket.create_connection(("127.0.0.1", server.http_port), 30) as sock:
                sock.sendall(
                    b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                wait_for(lambda: gone in liveness, "the request was not queued")
                is_active = liveness[gone]
                assert is_active is not None and is_active()  # connected: it counts as there
            wait_for(lambda: not is_active(), "the server did not notice the hang-up")
            kept = pool.submit(post, server, "/v1/embeddings", embed_body(stays))
            wait_for(lambda: stays in liveness, "the staying request was not queued")
        finally:
            release.set()
        for answer in (held.result(), kept.result()):
            assert answer[0] == 200 and len(answer[1]["data"]) == 1
    assert hold in encoded and stays in encoded
    assert gone not in encoded
    wait_for(
        lambda: request_counts(server).get(("Embed", "CANCELLED", "http")) == 1,
        "the dropped call was not counted as CANCELLED",
    )


def test_a_client_that_hangs_up_mid_body_is_a_cancel_not_a_crash(
    http_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert http_server.http_port is not None
    with socket.create_connection(("127.0.0.1", http_server.http_port), 30) as sock:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
            b'{"model": "'
        )
    wait_for(
        lambda: request_counts(http_server).get(("Embed", "CANCELLED", "http")) == 1,
        "the hang-up was not counted as CANCELLED",
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert send(http_server, "GET", "/v1/index")[0] == 200


# --- 4. malformed bodies, unknown paths, wrong methods ----------------------------------------

MALFORMED: dict[str, bytes] = {
    "deeply nested": b"[" * 100_000,
    "deeply nested in an object": b'{"input": ' + b"[" * 100_000,
    "deeply nested, closed": b"[" * 100_000 + b"]" * 100_000,
    "cut short": b'{"input": ',
    "not UTF-8": b'{"input": "\xff\xfe"}',
    "only invalid bytes": b"\xff\xfe\xfd\xfc",
    "a bare string": b'"a photo of a cat"',
    "a bare number": b"42",
    "an array": b'["a cat"]',
    "null": b"null",
    "empty": b"",
    "too many digits": b'{"input": ' + b"1" * 5000 + b"}",
    "NaN": b'{"input": NaN, "text": NaN, "top_k": NaN, "image": NaN}',
    "wrong types": b'{"model": 1, "input": {"a": 1}, "text": [], "labels": "x", "top_k": "a"}',
}

# JSON, but not a request the route can answer. "\ud800" is a lone surrogate, no character.
INVALID: dict[str, list[dict[str, object]]] = {
    "/v1/embeddings": [
        embed_body("\ud800"),
        embed_body(["fine", "a \udfff"]),
        embed_body("data:image/png;base64,\u00e9\u00e9=="),
        embed_body("http://images.example/\ud800.jpg"),
        {"model": TINY, "input": [[1, 2, 3]]},
        {"model": TINY, "input": "x", "encoding_format": "int8"},
    ],
    "/v1/search": [
        {"text": "\ud800"},
        {"image": "\u00e9"},
        {"text": "a", "top_k": 1e400},
        {"embedding": {"values": [[1.0]]}},
        {"item_id": 1e30},
        {"text": "a", "image": "aGVsbG8="},
    ],
    "/v1/classify": [
        {"image": "\u00e9", "labels": ["a", "b"]},
        {"image": "aGVsbG8=", "labels": ["\ud800", "b"]},
        {"image": "aGVsbG8=", "labels": "ab"},
    ],
}


@pytest.mark.parametrize("route", POST_ROUTES)
def test_malformed_bodies_get_400_on_every_route(http_server: RunningServer, route: str) -> None:
    invalid = {f"invalid {n}": json.dumps(body).encode() for n, body in enumerate(INVALID[route])}
    for name, body in {**MALFORMED, **invalid}.items():
        status, answer = send(http_server, "POST", route, body)
        assert status == 400, (name, answer)
        assert_openai_error(status, answer, 400)
        assert answer["error"]["type"] == "invalid_request_error", name
    # The server is still well.
    assert send(http_server, "GET", "/v1/index")[0] == 200


def test_unknown_paths_and_wrong_methods_in_the_same_error_shape(
    http_server: RunningServer,
) -> None:
    for method, path in [("GET", "/v2/embeddings"), ("POST", "/nothing"), ("GET", "/v1/")]:
        status, body = send(http_server, method, path)
        assert assert_openai_error(status, body, 404)
        assert body["error"]["type"] == "not_found_error"
    for method, path in [
        ("GET", "/v1/embeddings"), ("GET", "/v1/search"), ("PUT", "/v1/classify"),
        ("POST", "/v1/index"), ("DELETE", "/v1/models"), ("POST", "/openapi.json"),
    ]:  # fmt: skip
        status, body = send(http_server, method, path, b"{}" if method != "GET" else None)
        assert assert_openai_error(status, body, 405)
        assert body["error"]["type"] == "invalid_request_error"


# --- 5. concurrent clients --------------------------------------------------------------------


def test_32_concurrent_clients_are_all_served(http_server: RunningServer) -> None:
    port = http_server.http_port
    assert port is not None

    def client(n: int) -> list[int]:
        """Two requests on one keep-alive connection of its own."""
        statuses = []
        with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=60)) as conn:
            for path, body in [
                ("/v1/embeddings", embed_body([f"client {n}", f"another text {n}"])),
                ("/v1/search", {"text": f"textile {n}", "top_k": 3}),
            ]:
                conn.request("POST", path, json.dumps(body).encode(),
                             {"Content-Type": "application/json"})  # fmt: skip
                response = conn.getresponse()
                answer = json.loads(response.read())
                assert len(answer.get("data") or answer.get("hits") or []) in (2, 3), answer
                statuses.append(response.status)
        return statuses

    with ThreadPoolExecutor(32) as pool:
        statuses = [s for answer in pool.map(client, range(32)) for s in answer]
    assert statuses == [200] * 64


# --- 6. over-large bodies ---------------------------------------------------------------------


def test_an_over_large_body_gets_413_which_openai_does_not_retry(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(served_collection.index, http_port=0, max_message_bytes=1024 * 1024)
    # 9 MB: more than loopback's socket buffers hold, so the server must read the body
    # before answering, or the client sees a reset connection (which clients retry).
    inputs = ["x" * 9_000] * 1_000
    status, body = post(server, "/v1/embeddings", embed_body(inputs))
    message = assert_openai_error(status, body, 413)
    assert body["error"]["type"] == "invalid_request_error" and "1048576-byte limit" in message
    assert request_counts(server).get(("Embed", "TOO_LARGE", "http")) == 1
    client = openai.OpenAI(base_url=base_url(server) + "/v1", api_key="x", max_retries=2)
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model=TINY, input=inputs)
    assert refused.value.status_code == 413
    assert request_counts(server).get(("Embed", "TOO_LARGE", "http")) == 2  # one try, no retry
    # The connection stays usable and small requests still pass.
    assert client.embeddings.create(model=TINY, input="small").data


# --- 7. the OpenAPI description ---------------------------------------------------------------


def test_openapi_describes_every_route_and_the_proto_fields(http_server: RunningServer) -> None:
    with urllib.request.urlopen(base_url(http_server) + "/openapi.json") as response:
        assert response.headers["Content-Type"].startswith("application/json")
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"/v1/embeddings", "/v1/search", "/v1/classify", "/v1/index", "/v1/models"} <= set(paths)
    assert set(paths["/v1/search"]) == {"post"} and set(paths["/v1/index"]) == {"get"}
    schemas = document["components"]["schemas"]
    for message in (pb.SearchRequest, pb.ClassifyRequest, pb.SearchResponse):
        fields = {f.name for f in message.DESCRIPTOR.fields}
        assert set(schemas[message.DESCRIPTOR.name]["properties"]) == fields
    request = paths["/v1/search"]["post"]["requestBody"]["content"]["application/json"]
    assert request["schema"] == {"$ref": "#/components/schemas/SearchRequest"}


# --- 8. metrics -------------------------------------------------------------------------------


def test_metrics_count_http_calls_like_grpc_calls(
    http_server: RunningServer, served_collection: ServedCollection
) -> None:
    image = (served_collection.images / "chelsea.jpg").read_bytes()
    with SearchClient(f"127.0.0.1:{http_server.port}", timeout_s=30) as client:
        client.embed(texts=["a cat"])
        client.search(TextQuery("a cat"))
        client.search(ImageQuery(image))
        client.classify(image, ["cat", "dog"])
        client.index_info()
        for refused in (lambda: client.embed(texts=[""]), lambda: client.search(TextQuery(""))):
            with pytest.raises(RpcError):
                refused()
    encoded = base64.b64encode(image).decode()
    for path, body, expected in [
        ("/v1/embeddings", embed_body(["a cat"]), 200),
        ("/v1/search", {"text": "a cat"}, 200),
        ("/v1/search", {"image": encoded}, 200),
        ("/v1/classify", {"image": encoded, "labels": ["cat", "dog"]}, 200),
        ("/v1/embeddings", embed_body([""]), 400),
        ("/v1/search", {"text": ""}, 400),
    ]:
        assert post(http_server, path, body)[0] == expected
    assert send(http_server, "GET", "/v1/index")[0] == 200
    counts = request_counts(http_server)
    by_face = {
        face: {(rpc, code): n for (rpc, code, f), n in counts.items() if f == face}
        for face in ("grpc", "http")
    }
    assert by_face["http"] == by_face["grpc"] == {
        ("Embed", "OK"): 1, ("Search", "OK"): 2, ("Classify", "OK"): 1, ("GetIndexInfo", "OK"): 1,
        ("Embed", "INVALID_ARGUMENT"): 1, ("Search", "INVALID_ARGUMENT"): 1,
    }  # fmt: skip
    latency = scrape(http_server, "clipsearch_request_seconds_count", "rpc", "face")
    for rpc in ("Embed", "Search", "Classify", "GetIndexInfo"):
        assert latency[rpc, "http"] == latency[rpc, "grpc"] > 0


def test_http_connections_send_without_waiting_for_acks(
    served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    """Nagle's algorithm is off on accepted connections: otherwise the second write of
    every response waits ~40 ms for the client's delayed ACK."""
    server = start_server(served_collection.index, http_port=0)
    assert server.http_server is not None
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"GET /v1/index HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        connections = server.http_server._server.server_state.connections
        assert connections
        for protocol in connections:
            accepted = protocol.transport.get_extra_info("socket")  # type: ignore[attr-defined]
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
