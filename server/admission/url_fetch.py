"""Fetching query images by URL without becoming a proxy into the server's network.

Off unless enabled. The host must match the allowlist; every address it resolves to must
be public (private, loopback, link-local, multicast and reserved addresses are refused
unless an operator allows that network), and the connection goes to the address that was
checked, so DNS cannot be re-pointed between check and use. Redirects are checked the
same way. Size and time are capped.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from clipsearch.server.core.calls import RequestError, Status

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[IpAddress]]
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024


class UrlRefusedError(Exception):
    """The URL is not allowed or its content is unusable: the caller must change it."""


class UrlFetchFailedError(Exception):
    """The URL is allowed but could not be fetched (timeout, refused, server error)."""


@dataclass(frozen=True)
class UrlFetchConfig:
    enabled: bool = False
    # Host names ("images.example.com"), suffix patterns ("*.example.com") or "*" for any.
    allowed_hosts: tuple[str, ...] = ()
    # Non-public networks the operator allows (e.g. an intranet image store).
    allowed_networks: tuple[IpNetwork, ...] = field(default_factory=tuple)
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 5.0
    max_redirects: int = 3


def resolve(host: str, port: int) -> list[IpAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def address_problem(address: IpAddress, allowed: Sequence[IpNetwork]) -> str | None:
    """Why connecting to `address` is refused, or None."""
    if any(address in network for network in allowed):
        return None
    # Most specific first: link-local and loopback ranges also count as "private".
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return f"{kind.replace('_', '-')} address {address}"
    if not address.is_global:
        return f"non-public address {address}"
    return None


def fetch(url: str, config: UrlFetchConfig, resolver: Resolver = resolve) -> bytes:
    if not config.enabled:
        raise UrlRefusedError("image_url is disabled on this server: send the image bytes instead")
    deadline = time.monotonic() + config.timeout_s
    for _ in range(config.max_redirects + 1):
        response, connection = _get(url, config, resolver, deadline)
        try:
            if response.status in REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise UrlRefusedError(f"{url}: redirect without a Location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                failure = UrlFetchFailedError if response.status >= 500 else UrlRefusedError
                raise failure(f"{url}: the server answered HTTP {response.status}")
            return _body(response, url, config, deadline)
        finally:
            connection.close()
    raise UrlRefusedError(f"more than {config.max_redirects} redirects")


def _get(
    url: str, config: UrlFetchConfig, resolver: Resolver, deadline: float
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlRefusedError(f"{url!r}: only http:// and https:// URLs with a host are accepted")
    host = parts.hostname
    if not host_allowed(host, config.allowed_hosts):
        raise UrlRefusedError(f"host {host!r} is not on this server's image URL allowlist")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as err:
        raise UrlRefusedError(f"{url!r}: bad port") from err
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as err:
        raise UrlFetchFailedError(f"cannot resolve {host!r}: {err}") from err
    for address in addresses:
        if (problem := address_problem(address, config.allowed_networks)) is not None:
            raise UrlRefusedError(f"host {host!r} resolves to a {problem}: refused")
    if not addresses:
        raise UrlFetchFailedError(f"{host!r} resolves to no address")
    timeout = max(0.1, deadline - time.monotonic())
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = _PinnedHTTPS(host, port, str(addresses[0]), timeout)
    else:
        connection = _PinnedHTTP(host, port, str(addresses[0]), timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("GET", path, headers={"User-Agent": "clipsearch", "Accept": "image/*"})
        return connection.getresponse(), connection
    except (OSError, http.client.HTTPException) as err:
        connection.close()
        raise UrlFetchFailedError(f"cannot fetch {url}: {err}") from err


def _body(
    response: http.client.HTTPResponse, url: str, config: UrlFetchConfig, deadline: float
) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > config.max_bytes:
        raise UrlRefusedError(f"{url}: {declared} bytes, over the {config.max_bytes}-byte limit")
    chunks, size = [], 0
    try:
        while chunk := response.read(CHUNK):
            size += len(chunk)
            if size > config.max_bytes:
                raise UrlRefusedError(f"{url}: over the {config.max_bytes}-byte limit")
            if time.monotonic() > deadline:
                raise UrlFetchFailedError(f"{url}: took longer than {config.timeout_s} s")
            chunks.append(chunk)
    except (OSError, http.client.HTTPException) as err:
        raise UrlFetchFailedError(f"cannot fetch {url}: {err}") from err
    return b"".join(chunks)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever DNS says by then."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def image_fetcher(config: UrlFetchConfig, field: str = "image_url") -> Callable[[str], bytes]:
    """`fetch` under `config`, failing as a request error: a refused URL is the caller's
    to change (INVALID_ARGUMENT), a failed fetch may work later (UNAVAILABLE)."""

    def fetch_image(url: str) -> bytes:
        try:
            return fetch(url, config)
        except UrlRefusedError as err:
            raise RequestError(Status.INVALID_ARGUMENT, f"{field}: {err}") from err
        except UrlFetchFailedError as err:
            raise RequestError(Status.UNAVAILABLE, f"{field}: {err}") from err

    return fetch_image
