"""Calls beyond --max-concurrent wait for a turn within their deadline: a real gRPC server
on a loopback port, real clients, and calls made slow by a real image host that holds its
answers until the test lets them go."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from clipsearch.client import ImageUrlQuery, RpcError, SearchClient, TextQuery
from clipsearch.server.admission.url_fetch import UrlFetchConfig
from clipsearch.server.app import RunningServer
from clipsearch.types import SearchResult
from tests.served import ServedCollection


class GatedImages(BaseHTTPRequestHandler):
    """Serves one image, each request held until `gate` opens; counts requests begun."""

    image = b""
    gate = threading.Event()
    begun = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with GatedImages.lock:
            GatedImages.begun += 1
        GatedImages.gate.wait(60)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gated_host(served_collection: ServedCollection) -> Iterator[str]:
    GatedImages.image = (served_collection.images / "chelsea.jpg").read_bytes()
    GatedImages.gate = threading.Event()
    GatedImages.begun = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), GatedImages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://localhost:{httpd.server_address[1]}/img.jpg"
    GatedImages.gate.set()
    httpd.shutdown()
    httpd.server_close()


def _server(
    start_server: Callable[..., RunningServer],
    served_collection: ServedCollection,
    limit: int,
    waiting: int,
) -> RunningServer:
    urls = UrlFetchConfig(
        enabled=True,
        allowed_hosts=("localhost",),
        allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        timeout_s=60.0,
    )
    return start_server(
        served_collection.index,
        max_concurrent_rpcs=limit,
        max_waiting_rpcs=waiting,
        image_urls=urls,
    )


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for the server to reach a state (a cap against hanging, not a timing check)."""
    give_up = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < give_up, f"never reached: {what}"
        time.sleep(0.01)


def _search(target: str, url: str, timeout_s: float = 60) -> SearchResult:
    with SearchClient(target, timeout_s=timeout_s) as client:
        return client.search(ImageUrlQuery(url), top_k=3)


def _count(server: RunningServer, code: str) -> float:
    labels = {"rpc": "Search", "code": code, "face": "grpc"}
    value = server.metrics.registry.get_sample_value("clipsearch_requests_total", labels)
    return value or 0.0


def test_four_times_the_limit_of_slow_calls_all_succeed(
    gated_host: str, served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    limit = 3
    server = _server(start_server, served_collection, limit, waiting=3 * limit + 1)
    target = f"127.0.0.1:{server.port}"
    with ThreadPoolExecutor(4 * limit + 1) as pool:
        calls = [pool.submit(_search, target, gated_host) for _ in range(4 * limit)]
        _until(lambda: server.slots.waiting == 3 * limit, "3x the limit queued")
        # Only the limit's worth of calls got to work (each is fetching its image).
        _until(lambda: GatedImages.begun == limit, "the calls at work fetching")
        assert server.slots.running == limit and GatedImages.begun == limit
        # A text search queues behind them too, rather than being refused.
        with SearchClient(target, timeout_s=60) as client:
            text: Future[SearchResult] = pool.submit(client.search, TextQuery("a cat"))
            _until(lambda: server.slots.waiting == 3 * limit + 1, "the text search queued")
            GatedImages.gate.set()
            results = [call.result() for call in calls]
            assert text.result().hits
    assert all(result.hits for result in results)
    assert GatedImages.begun == 4 * limit
    assert _count(server, "OK") == 4 * limit + 1
    assert server.slots.running == 0 and server.slots.waiting == 0


def test_a_call_whose_deadline_passes_in_the_queue_gets_deadline_exceeded(
    gated_host: str, served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    server = _server(start_server, served_collection, limit=1, waiting=4)
    target = f"127.0.0.1:{server.port}"
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(_search, target, gated_host)
        _until(lambda: GatedImages.begun == 1, "the first call at work")
        with pytest.raises(RpcError) as late:
            _search(target, gated_host, timeout_s=0.5)
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # The server gave up on it too: it left the queue and never started its fetch.
        _until(lambda: _count(server, "DEADLINE_EXCEEDED") == 1, "the server's refusal")
        assert server.slots.waiting == 0 and GatedImages.begun == 1
        GatedImages.gate.set()
        assert holder.result().hits


def test_a_full_queue_is_refused_with_resource_exhausted(
    gated_host: str, served_collection: ServedCollection, start_server: Callable[..., RunningServer]
) -> None:
    server = _server(start_server, served_collection, limit=1, waiting=2)
    target = f"127.0.0.1:{server.port}"
    with ThreadPoolExecutor(3) as pool:
        admitted = [pool.submit(_search, target, gated_host) for _ in range(3)]
        _until(lambda: server.slots.waiting == 2, "the queue full")
        with pytest.raises(RpcError) as refused:
            _search(target, gated_host)
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-waiting" in refused.value.details and "retry" in refused.value.details
        GatedImages.gate.set()
        assert all(call.result().hits for call in admitted)
    # The client retried the refused call with backoff (4 attempts), each refused alike.
    assert _count(server, "RESOURCE_EXHAUSTED") == 4 and _count(server, "OK") == 3
