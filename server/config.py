"""The server's settings, one typed place for every limit and default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clipsearch.encoder import DEFAULT_MAX_PIXELS, ModelSpec
from server.auth import KeyRing
from server.quota import Limit
from server.url_fetch import UrlFetchConfig

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9090


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond these it gets INVALID_ARGUMENT."""

    max_top_k: int = 1000
    max_batch_queries: int = 256
    max_labels: int = 1000
    max_templates: int = 64
    max_text_chars: int = 10_000
    max_embed_inputs: int = 256
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_effort: int = 65_536


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching of model and index work across concurrent requests."""

    max_batch: int = 32
    max_wait_ms: float = 2.0
    # Items waiting per stage; beyond it requests get RESOURCE_EXHAUSTED, not longer waits.
    max_queue: int = 1024


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
class ServerConfig:
    index_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    metrics_port: int | None = DEFAULT_METRICS_PORT  # None: no metrics endpoint
    model: ModelSpec | None = None  # None: the model the index was built with
    device: str = "auto"  # for the model the index names
    limits: Limits = Limits()
    batching: BatchingConfig = BatchingConfig()
    max_concurrent_rpcs: int = 64
    max_message_bytes: int = 16 * 1024 * 1024
    reload_interval_s: float = 2.0
    grace_s: float = 10.0
    # A plaintext port serving only grpc.health.v1, for probes that cannot speak TLS
    # (Kubernetes' native gRPC probes).
    health_port: int | None = None
    # The HTTP face (OpenAI-compatible embeddings, JSON search, the search page); None: off.
    http_port: int | None = None
    # Clients reconnect (and re-resolve) after this long, so new replicas get traffic.
    max_connection_age_s: float | None = None
    security: SecurityConfig = field(default_factory=SecurityConfig)
    image_urls: UrlFetchConfig = field(default_factory=UrlFetchConfig)
