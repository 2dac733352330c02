"""Running the ASGI app under uvicorn, in a thread beside the gRPC server.

The socket is bound here, before the thread starts, so a busy port fails the start with a
clear error and port 0 reports the port it got. Idle connections are closed after
`idle_timeout_s`, including ones that never send a request or send headers a byte at a
time; shutdown lets in-flight requests finish within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from clipsearch.server.config import HttpSettings

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 10.0
BACKLOG = 2048  # connections the kernel queues before accepting; http.server had 5


class _HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn arms its keep-alive timer only after a response and disarms it at the first
    byte of the next request, so a connection that sends nothing, or its headers a byte at
    a time, would be held forever. This one runs a timer from the connection's start (and
    from each response) until a request's headers are complete."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.timeout_keep_alive, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


class HttpServer:
    def __init__(
        self, app: ASGIApp, host: str, port: int, settings: HttpSettings, grace_s: float
    ) -> None:
        self._socket = _bind(host, port)
        config = uvicorn.Config(
            app,
            http=_HeaderTimeoutProtocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_keep_alive=max(1, round(settings.idle_timeout_s)),
            timeout_graceful_shutdown=max(1, round(grace_s)),
            backlog=BACKLOG,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (within the grace period), close."""
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; raises OSError (e.g. the port is taken)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections of a socket that says it is TCP. Without it a response written in two
    # parts waits for the client's delayed ACK: +40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock
