"""Query images by URL: allowlist, private addresses refused after resolution, caps."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from clipsearch.client import ImageUrlQuery, RpcError, SearchClient
from clipsearch.server.admission.url_fetch import (
    UrlFetchConfig,
    UrlFetchFailedError,
    UrlRefusedError,
    address_problem,
    fetch,
    host_allowed,
)
from clipsearch.server.app import RunningServer
from tests.served import ServedCollection

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


class ImageHost(BaseHTTPRequestHandler):
    """/img.jpg: an image; /big: too large; /slow: trickles; /hop: redirects; /gone: 404."""

    image = b""
    redirect_to = ""

    def do_GET(self) -> None:
        if self.path == "/img.jpg":
            self._send(200, self.image)
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        elif self.path == "/slow":
            self.send_response(200)
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", type(self).redirect_to)
            self.end_headers()
        else:
            self._send(404, b"")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_host(served_collection: ServedCollection) -> Iterator[str]:
    ImageHost.image = (served_collection.images / "chelsea.jpg").read_bytes()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ImageHost)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def allowed(**changes: object) -> UrlFetchConfig:
    settings: dict[str, object] = {
        "enabled": True, "allowed_hosts": ("localhost",), "allowed_networks": LOOPBACK,
        "max_bytes": 1_000_000, "timeout_s": 2.0,
    }  # fmt: skip
    settings.update(changes)
    return UrlFetchConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "patterns", "expected"),
    [
        ("img.example.com", ("img.example.com",), True),
        ("IMG.example.com.", ("img.example.com",), True),
        ("a.b.example.com", ("*.example.com",), True),
        ("example.com", ("*.example.com",), False),
        ("evil-example.com", ("*.example.com",), False),
        ("anything.org", ("*",), True),
        ("anything.org", (), False),
    ],
)
def test_host_allowlist(host: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert host_allowed(host, patterns) is expected


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.9", "private"),
        ("169.254.169.254", "link-local"), ("::1", "loopback"), ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("100.64.0.1", "non-public"),
        ("93.184.216.34", None), ("2606:4700::1111", None),
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str, refused: str | None) -> None:
    problem = address_problem(ipaddress.ip_address(address), ())
    assert (problem is None) if refused is None else (refused in (problem or ""))


def test_an_allowed_url_is_fetched(image_host: str) -> None:
    assert fetch(f"http://{image_host}/img.jpg", allowed()) == ImageHost.image


def test_a_redirect_is_followed_only_to_an_allowed_place(image_host: str) -> None:
    ImageHost.redirect_to = f"http://{image_host}/img.jpg"
    assert fetch(f"http://{image_host}/hop", allowed()) == ImageHost.image
    ImageHost.redirect_to = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(UrlRefusedError, match="allowlist"):
        fetch(f"http://{image_host}/hop", allowed())
    with pytest.raises(UrlRefusedError, match="link-local"):
        fetch(f"http://{image_host}/hop", allowed(allowed_hosts=("*",)))


@pytest.mark.parametrize(
    ("url", "config", "error", "message"),
    [
        ("http://{h}/img.jpg", UrlFetchConfig(), UrlRefusedError, "disabled"),
        ("file:///etc/passwd", allowed(), UrlRefusedError, "only http"),
        ("http://{h}/img.jpg", allowed(allowed_hosts=("a.test",)), UrlRefusedError, "allowlist"),
        ("http://{h}/img.jpg", allowed(allowed_networks=()), UrlRefusedError, "loopback address"),
        ("http://{h}/big", allowed(max_bytes=1000), UrlRefusedError, "byte limit"),
        ("http://{h}/slow", allowed(timeout_s=0.5), UrlFetchFailedError, "longer than|timed out"),
        ("http://{h}/gone", allowed(), UrlRefusedError, "HTTP 404"),
    ],
    ids=["disabled", "scheme", "host", "private", "size", "timeout", "404"],
)  # fmt: skip
def test_refused_and_failed_fetches(
    image_host: str, url: str, config: UrlFetchConfig, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        fetch(url.format(h=image_host), config)


def test_search_by_image_url_through_the_server(
    image_host: str,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    plain = start_server(served_collection.index)
    with SearchClient(f"127.0.0.1:{plain.port}") as client, pytest.raises(RpcError) as off:
        client.search(ImageUrlQuery(f"http://{image_host}/img.jpg"))
    assert off.value.code == grpc.StatusCode.INVALID_ARGUMENT and "disabled" in off.value.details

    server = start_server(served_collection.index, image_urls=allowed())
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        hits = client.search(ImageUrlQuery(f"http://{image_host}/img.jpg"), top_k=1).hits
        assert Path(hits[0].uri).name == "chelsea.jpg"
        with pytest.raises(RpcError) as refused:
            client.search(ImageUrlQuery("http://169.254.169.254/latest/meta-data/"))
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
