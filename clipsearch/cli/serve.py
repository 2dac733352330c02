"""`clipsearch serve`: run the gRPC server until SIGTERM or Ctrl-C, then drain and exit 0."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import signal
import threading
from pathlib import Path

from clipsearch.cli.args import add_model_arguments, named_model
from clipsearch.encoder import select_device
from clipsearch.errors import ClipsearchError
from clipsearch.server.admission.keys import ENV_VAR, load_keys
from clipsearch.server.admission.quota import Limit
from clipsearch.server.admission.url_fetch import UrlFetchConfig
from clipsearch.server.app import start
from clipsearch.server.config import (
    HttpSettings,
    NamedIndex,
    SecurityConfig,
    ServerConfig,
    TlsConfig,
)
from clipsearch.server.core.config import DEVICE_DEFAULTS, BatchingConfig, Limits, device_defaults
from clipsearch.server.logs import use_json_logs


def register(serve: argparse.ArgumentParser) -> None:
    serve.description = (
        "Serve the current version of INDEX_DIR over gRPC (clipsearch.v1."
        "SearchService, plus grpc.health.v1 and server reflection), with the CLIP model the "
        "index was built with. New versions published into INDEX_DIR are picked up without a "
        "restart. SIGTERM drains in-flight requests and exits 0."
    )
    serve.add_argument(
        "--index",
        type=named_index,
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="an index folder to serve, named NAME (default: the folder's name); repeat to "
        "serve several, which requests then name (indexes of one model share it)",
    )
    serve.add_argument(
        "--wait",
        action="store_true",
        help="start even if the index folder holds no version yet, and serve the first one a "
        "build publishes (needs --model and --pretrained; default: fail)",
    )
    defaults = ServerConfig(())
    serve.add_argument(
        "--host",
        default=defaults.host,
        help="address to listen on; 0.0.0.0 or [::] to accept other hosts "
        f"(default: {defaults.host})",
    )
    serve.add_argument(
        "--port", type=int, default=defaults.port, help=f"gRPC port (default: {defaults.port})"
    )
    serve.add_argument(
        "--http-port",
        type=int,
        help="also serve HTTP on this port: OpenAI-compatible /v1/embeddings, JSON "
        "/v1/search and /v1/classify, clip-retrieval's clip-back API (/knn-service, "
        "/indices-list, /metadata), and a search page at / (default: off)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from this origin read clip-back answers, e.g. a clip-front at "
        "http://localhost:8000; * for any (repeatable; default: none)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help=f"Prometheus /metrics port, -1 to disable (default: {defaults.metrics_port})",
    )
    add_model_arguments(serve, required=False)
    _add_security_arguments(serve)
    _add_image_url_arguments(serve)
    _add_tuning_arguments(serve)
    serve.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="json: one object per line"
    )
    serve.set_defaults(run=run_serve_command)


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security")
    group.add_argument(
        "--api-keys",
        type=Path,
        metavar="FILE",
        help=f"API keys, one per line: NAME SECRET SCOPES [rate=N] [concurrent=N] (scopes: "
        f"search, admin); also read from ${ENV_VAR}. Callers send 'authorization: Bearer SECRET'",
    )
    group.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="listen beyond loopback without API keys (only behind a proxy that authenticates)",
    )
    group.add_argument(
        "--key-rate",
        type=float,
        help="requests/s per key, for keys that set no rate= (default: unlimited)",
    )
    group.add_argument(
        "--key-concurrency",
        type=int,
        help="requests in flight per key, for keys that set no concurrent= (default: unlimited)",
    )
    group.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve over TLS")
    group.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    group.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA bundle: require client certificates it signed (mutual TLS)",
    )


def _add_image_url_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = UrlFetchConfig()
    group = parser.add_argument_group("query images by URL (off by default)")
    group.add_argument(
        "--image-url-hosts",
        metavar="HOSTS",
        help="enable image_url queries for these hosts: comma-separated names, *.suffix "
        "patterns, or * for any public host",
    )
    group.add_argument(
        "--image-url-networks",
        metavar="CIDRS",
        help="non-public networks image URLs may resolve to, e.g. 10.20.0.0/16 (default: none; "
        "private, loopback and link-local addresses are refused)",
    )
    group.add_argument(
        "--image-url-max-mb",
        type=float,
        default=defaults.max_bytes / 2**20,
        help=f"largest image fetched (default: {defaults.max_bytes / 2**20:g})",
    )
    group.add_argument(
        "--image-url-timeout",
        type=float,
        default=defaults.timeout_s,
        help=f"seconds a fetch may take (default: {defaults.timeout_s:g})",
    )


def _image_urls(args: argparse.Namespace) -> UrlFetchConfig:
    if not args.image_url_hosts:
        return UrlFetchConfig()
    try:
        networks = tuple(
            ipaddress.ip_network(n.strip())
            for n in (args.image_url_networks or "").split(",")
            if n.strip()
        )
    except ValueError as err:
        raise ClipsearchError(f"--image-url-networks: {err}") from err
    return UrlFetchConfig(
        enabled=True,
        allowed_hosts=tuple(h.strip() for h in args.image_url_hosts.split(",") if h.strip()),
        allowed_networks=networks,
        max_bytes=int(args.image_url_max_mb * 2**20),
        timeout_s=args.image_url_timeout,
    )


def _security(args: argparse.Namespace) -> SecurityConfig:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ClipsearchError("--tls-cert and --tls-key go together: give both")
    if args.tls_client_ca and not args.tls_cert:
        raise ClipsearchError("--tls-client-ca needs --tls-cert and --tls-key")
    tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    return SecurityConfig(
        keys=load_keys(args.api_keys, os.environ),
        key_limit=Limit(args.key_rate, args.key_concurrency),
        allow_unauthenticated=args.allow_unauthenticated,
        tls=tls,
    )


def _by_device(setting: str) -> str:
    """The help's default, per device: " (default: 32 on CPU, 256 on CUDA)"."""
    values = (f"{getattr(d, setting)} on {kind.upper()}" for kind, d in DEVICE_DEFAULTS.items())
    return f" (default: {', '.join(values)})"


def _add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    server = ServerConfig(())
    batching, limits = server.batching, server.limits
    group = parser.add_argument_group("batching and limits")
    group.add_argument(
        "--max-batch",
        type=int,
        help="most queries encoded or searched together" + _by_device("max_batch"),
    )
    group.add_argument(
        "--batch-wait-ms",
        type=float,
        default=batching.max_wait_ms,
        help="longest a query waits for a batch to fill under concurrent load "
        f"(default: {batching.max_wait_ms})",
    )
    group.add_argument(
        "--max-queue",
        type=int,
        help="queries waiting per stage (text, image, search) before RESOURCE_EXHAUSTED"
        + _by_device("max_queue"),
    )
    group.add_argument(
        "--max-concurrent",
        type=int,
        help="calls at work at once; more wait for a turn within their deadline"
        + _by_device("max_concurrent"),
    )
    group.add_argument(
        "--max-waiting",
        type=int,
        help="calls waiting for a turn; beyond them calls get RESOURCE_EXHAUSTED"
        + _by_device("max_waiting"),
    )
    group.add_argument(
        "--max-message-mb",
        type=float,
        default=server.max_message_bytes / 2**20,
        help=f"largest request or response in MB (default: {server.max_message_bytes / 2**20:g})",
    )
    group.add_argument(
        "--max-image-pixels",
        type=int,
        default=limits.max_image_pixels,
        help=f"largest query image in pixels (default: {limits.max_image_pixels})",
    )
    group.add_argument(
        "--reload-interval",
        type=float,
        default=server.reload_interval_s,
        help="seconds between checks for a newly published index version "
        f"(default: {server.reload_interval_s:g})",
    )
    group.add_argument(
        "--health-port",
        type=int,
        help="also serve grpc.health.v1 alone on this plaintext port, for probes that cannot "
        "use TLS (service '' is ready; 'liveness' is SERVING while the process runs)",
    )
    group.add_argument(
        "--max-connection-age",
        type=float,
        help="seconds after which clients are asked to reconnect, so load spreads to new "
        "replicas (default: never)",
    )
    group.add_argument(
        "--grace",
        type=float,
        default=server.grace_s,
        help=f"seconds in-flight requests get to finish on SIGTERM (default: {server.grace_s:g})",
    )


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def named_index(text: str) -> NamedIndex:
    """`--index photos=/data/photos-index`, or a bare path named after its folder."""
    name, equals, path = text.partition("=")
    if not equals:
        return NamedIndex.of(Path(text))[0]
    if not NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{name!r} is not an index name: use letters, digits, '_', '.' and '-'"
        )
    return NamedIndex(name, Path(path))


def _unique(indexes: list[NamedIndex]) -> tuple[NamedIndex, ...]:
    names = [n.name for n in indexes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ClipsearchError(
            f"two indexes are named {twice[0]!r}",
            hint="give each --index its own name: --index NAME=PATH",
        )
    return tuple(indexes)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    sized = device_defaults(select_device(args.device).type)

    def chosen(flag: int | None, default: int) -> int:
        return default if flag is None else flag

    return ServerConfig(
        indexes=_unique(args.index),
        wait_for_index=args.wait,
        host=args.host,
        port=args.port,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        model=named_model(args),
        device=args.device,
        limits=Limits(max_image_pixels=args.max_image_pixels),
        batching=BatchingConfig(
            chosen(args.max_batch, sized.max_batch),
            args.batch_wait_ms,
            chosen(args.max_queue, sized.max_queue),
        ),
        max_concurrent_rpcs=chosen(args.max_concurrent, sized.max_concurrent),
        max_waiting_rpcs=chosen(args.max_waiting, sized.max_waiting),
        max_message_bytes=int(args.max_message_mb * 1024 * 1024),
        reload_interval_s=args.reload_interval,
        grace_s=args.grace,
        health_port=args.health_port,
        http_port=args.http_port,
        http=HttpSettings(cors_origins=tuple(args.cors_origin)),
        max_connection_age_s=args.max_connection_age,
        security=_security(args),
        image_urls=_image_urls(args),
    )


def run_serve_command(args: argparse.Namespace) -> int:
    if args.log_format == "json":
        use_json_logs()
    config = config_from_args(args)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    running = start(config)
    print(f"clipsearch: serving on {config.host}:{running.port}", flush=True)
    stop.wait()
    running.stop(config.grace_s)
    return 0
