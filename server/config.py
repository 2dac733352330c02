"""The server's settings, one typed place for every limit and default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.models import ModelSpec
from clipsearch.server.admission.keys import KeyRing
from clipsearch.server.admission.quota import Limit
from clipsearch.server.admission.url_fetch import UrlFetchConfig
from clipsearch.server.core.config import DEVICE_DEFAULTS, BatchingConfig, Limits

DEFAULT_PORT = 50051
# Ours, beside gRPC (50051) and the usual health probe port (50052); off Prometheus's own
# 9090, which is taken on exactly the hosts that scrape.
DEFAULT_METRICS_PORT = 50053


@dataclass(frozen=True)
class TlsConfig:
    """PEM files; with `client_ca`, clients must present a certificate it signed (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class SecurityConfig:
    keys: KeyRing = field(default_factory=lambda: KeyRing([]))
    key_limit: Limit = field(default_factory=Limit)  # for keys that do not set their own
    # Without keys the server listens on loopback only, unless this says otherwise.
    allow_unauthenticated: bool = False
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP face's connection handling and its share of the server."""

    idle_timeout_s: float = 5.0  # keep-alive, and waiting for a request's headers
    request_timeout_s: float = 60.0  # a request's deadline (gRPC callers set their own)
    # Origins whose pages may read clip-back answers (clip-front runs on its own); "*": any.
    cors_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamedIndex:
    """An index folder a server serves, and the name requests use for it."""

    name: str
    path: Path

    @staticmethod
    def of(path: Path) -> tuple[NamedIndex, ...]:
        """One index, named after its folder."""
        return (NamedIndex(path.name or "index", path),)


@dataclass(frozen=True)
class ServerConfig:
    indexes: tuple[NamedIndex, ...]
    # Start even when a folder holds no version yet, and serve the first one published.
    wait_for_index: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    metrics_port: int | None = DEFAULT_METRICS_PORT  # None: no metrics endpoint
    model: ModelSpec | None = None  # None: the model each index was built with
    device: str = "auto"  # for the models the indexes name
    limits: Limits = field(default_factory=Limits)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    # Calls at work at once, and calls beyond those waiting for a turn within their
    # deadline; `clipsearch serve` sizes both for the device (core/config.py).
    max_concurrent_rpcs: int = DEVICE_DEFAULTS["cpu"].max_concurrent
    max_waiting_rpcs: int = DEVICE_DEFAULTS["cpu"].max_waiting
    max_message_bytes: int = 16 * 1024 * 1024
    reload_interval_s: float = 2.0
    grace_s: float = 10.0
    # A plaintext port serving only grpc.health.v1, for probes that cannot speak TLS
    # (Kubernetes' native gRPC probes).
    health_port: int | None = None
    # The HTTP face (OpenAI-compatible embeddings, JSON search, the search page); None: off.
    http_port: int | None = None
    http: HttpSettings = field(default_factory=HttpSettings)
    # Clients reconnect (and re-resolve) after this long, so new replicas get traffic.
    max_connection_age_s: float | None = None
    security: SecurityConfig = field(default_factory=SecurityConfig)
    image_urls: UrlFetchConfig = field(default_factory=UrlFetchConfig)
