"""Assemble and run a server: gRPC with health and reflection, the model, the index, metrics.

The port is bound and health says NOT_SERVING before the model loads, so orchestrators
can tell "starting" from "dead"; it turns SERVING once a model and an index are loaded.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from clipsearch.encoder import ClipEncoder, load_encoder
from clipsearch.errors import ClipsearchError
from clipsearch.index.manifest import (
    CURRENT_FILE,
    MANIFEST_FILE,
    VERSIONS_DIR,
    IndexManifest,
    current_version,
)
from clipsearch.index.publish import list_versions
from clipsearch.index.version import IndexVersion
from clipsearch.models import ModelSpec
from clipsearch.server.admission.access import Access
from clipsearch.server.admission.url_fetch import image_fetcher
from clipsearch.server.config import ServerConfig
from clipsearch.server.core.encoding import Encoding
from clipsearch.server.core.index_holder import IndexHolder, RefusedVersion, ReloadFailedError
from clipsearch.server.core.served import Served
from clipsearch.server.core.service import SearchService, compatibility
from clipsearch.server.core.slots import CallSlots
from clipsearch.server.grpc.servicer import rpc_handlers
from clipsearch.server.grpc.tls import server_credentials
from clipsearch.server.http.app import HttpFace
from clipsearch.server.http.serving import HttpServer
from clipsearch.server.metrics import Metrics
from clipsearch.server.pipeline import Pipeline
from clipsearch.v1 import search_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
# SERVING from start-up to shutdown, whatever is loaded: for liveness probes, which must
# not restart a server that is waiting for its first index.
LIVENESS = "liveness"


class ServerStartError(ClipsearchError):
    """The server cannot start: port taken, no model to load, ..."""


@dataclass
class RunningServer:
    grpc_server: grpc.Server
    port: int
    served: Served
    health: health.HealthServicer
    metrics: Metrics
    metrics_server: WSGIServer | None
    slots: CallSlots
    health_server: grpc.Server | None = None
    health_port: int | None = None
    http_server: HttpServer | None = None
    stop_watching: threading.Event = field(default_factory=threading.Event)

    @property
    def service(self) -> SearchService:
        """The index, when one is served."""
        return self.served.index("")

    @property
    def http_port(self) -> int | None:
        return self.http_server.port if self.http_server else None

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.server_port if self.metrics_server else None

    def stop(self, grace_s: float) -> None:
        """Refuse new calls, let in-flight ones finish within `grace_s`, then shut down."""
        log.info("draining (grace %.1f s)", grace_s, extra={"event": "draining"})
        self.health.enter_graceful_shutdown()
        self.stop_watching.set()
        grpc_stopped = self.grpc_server.stop(grace_s)  # both faces drain at once
        if self.http_server is not None:
            self.http_server.stop()
        grpc_stopped.wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()
        self.served.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        log.info("stopped", extra={"event": "stopped"})


def start(config: ServerConfig, encoder: ClipEncoder | None = None) -> RunningServer:
    """Start serving `config.indexes`; `encoder` skips loading models (tests, benchmarks)."""
    _check_exposure(config)
    _check_index_dirs(config)
    metrics = Metrics()
    security = config.security
    slots = CallSlots(config.max_concurrent_rpcs, config.max_waiting_rpcs)
    metrics.track_calls(lambda: slots.running, lambda: slots.waiting)
    pipeline = Pipeline(Access(security.keys, security.key_limit), metrics, slots)
    health_servicer = health.HealthServicer()
    server = _grpc_server(config, pipeline, health_servicer)
    address = f"{config.host}:{config.port}"
    try:
        if security.tls is not None:
            port = server.add_secure_port(address, server_credentials(security.tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.60 raises where it used to return 0
        port = 0
    if port == 0:
        raise _port_taken("gRPC", config.host, config.port, "--port")
    _set_health(health_servicer, False)
    health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    server.start()
    health_server = metrics_server = http_server = None
    try:
        health_server, health_port = _health_only_server(config, health_servicer)
        if config.metrics_port is not None:
            try:
                metrics_server, _ = metrics.serve(config.host, config.metrics_port)
            except OSError as err:
                raise _port_taken("metrics", config.host, config.metrics_port,
                                  "--metrics-port", err) from err  # fmt: skip
        http_server = _http_server(config, pipeline)
        served = _serve_indexes(config, encoder, metrics, health_servicer)
    except BaseException:
        server.stop(0)
        if health_server is not None:
            health_server.stop(0)
        if metrics_server is not None:
            metrics_server.shutdown()
        if http_server is not None:
            http_server.stop()
        raise
    pipeline.served = served
    running = RunningServer(
        server, port, served, health_servicer, metrics, metrics_server, slots, health_server,
        health_port, http_server,
    )  # fmt: skip
    for service in served.indexes.values():
        service.holder.watch(config.reload_interval_s, running.stop_watching)
    log.info(
        "listening on %s:%d (HTTP: %s, metrics: %s)", config.host, port,
        running.http_port or "off", running.metrics_port or "off",
        extra={"event": "listening", "port": port},
    )  # fmt: skip
    return running


def _serve_indexes(
    config: ServerConfig,
    encoder: ClipEncoder | None,
    metrics: Metrics,
    health_servicer: health.HealthServicer,
) -> Served:
    """Every index with its version loaded; indexes of one model share one Encoding.
    `encoder`, when given, serves every index (tests, benchmarks)."""
    encodings: dict[ModelSpec | None, Encoding] = {}
    services: dict[str, SearchService] = {}
    watched = _Health(health_servicer, [n.name for n in config.indexes])
    for named in config.indexes:
        spec = None if encoder is not None else _model_to_load(config, named.path)
        if spec not in encodings:
            loaded = encoder or load_encoder(spec)
            encodings[spec] = Encoding(
                loaded, config.limits, config.batching, image_fetcher(config.image_urls),
                metrics.batch_observer(loaded.info.model),
            )  # fmt: skip
            for batcher in (encodings[spec].text_batcher, encodings[spec].image_batcher):
                metrics.track_queue(batcher.name, loaded.info.model, batcher.depth)
        encoding = encodings[spec]
        metrics.index_started(named.name)
        events = _IndexEvents(named.name, metrics, watched)
        holder = IndexHolder(named.path, compatibility(encoding.encoder.info), events)
        try:
            holder.reload()
        except ReloadFailedError as err:  # a fallback may serve; the watcher keeps trying
            log.error("%s", err, extra={"event": "reload_failed"})
        if holder.current is None and holder.refused is None:
            log.warning("no index in %s yet: waiting for a build to publish one", named.path)
        service = SearchService(
            named.name, encoding, holder, config.batching, metrics.batch_observer(named.name)
        )
        metrics.track_queue("search", named.name, service.search_batcher.depth)
        services[named.name] = service
    return Served(services)


def _check_exposure(config: ServerConfig) -> None:
    """Without API keys, anyone who can reach the port can call: allow that on loopback only."""
    if len(config.security.keys):
        return
    if not is_loopback(config.host) and not config.security.allow_unauthenticated:
        raise ServerStartError(
            f"refusing to listen on {config.host} without API keys: anyone on the network "
            "could call. Give --api-keys FILE (or CLIPSEARCH_API_KEYS), or pass "
            "--allow-unauthenticated if a proxy in front authenticates callers"
        )
    log.warning(
        "no API keys configured: every caller that can reach %s is served", config.host,
        extra={"event": "unauthenticated"},
    )  # fmt: skip


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _grpc_server(
    config: ServerConfig, pipeline: Pipeline, health_servicer: health.HealthServicer
) -> grpc.Server:
    # A thread per call at work or waiting for a turn (the pipeline's slots decide which);
    # gRPC's own limit, one past those, only bounds the threads: the slots refuse a full
    # queue first, with a message that says what to do.
    calls = config.max_concurrent_rpcs + config.max_waiting_rpcs + 1
    server = grpc.server(
        ThreadPoolExecutor(calls, thread_name_prefix="rpc"),
        maximum_concurrent_rpcs=calls,
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
            *_connection_age(config),
        ],
    )
    server.add_generic_rpc_handlers((rpc_handlers(pipeline),))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    return server


def _connection_age(config: ServerConfig) -> list[tuple[str, int]]:
    if not config.max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(config.grace_s * 1000)),
    ]


def _http_server(config: ServerConfig, pipeline: Pipeline) -> HttpServer | None:
    """The HTTP face, started: it answers UNAVAILABLE until the pipeline has a service."""
    if config.http_port is None:
        return None
    app = HttpFace(pipeline, config).app()
    try:
        server = HttpServer(app, config.host, config.http_port, config.http, config.grace_s)
    except OSError as err:
        raise _port_taken("HTTP", config.host, config.http_port, "--http-port", err) from err
    server.start()
    return server


def _port_taken(
    what: str, host: str, port: int, flag: str, err: OSError | None = None
) -> ServerStartError:
    reason = err.strerror if err is not None and err.strerror else "in use, or not allowed"
    return ServerStartError(
        f"cannot serve {what} on {host}:{port}: {reason}",
        hint=f"{flag} picks another port (0: any free one)"
        + (", -1 turns metrics off" if flag == "--metrics-port" else ""),
    )


def _check_index_dirs(config: ServerConfig) -> None:
    for named in config.indexes:
        _check_index_dir(config, named.path)


def _check_index_dir(config: ServerConfig, folder: Path) -> None:
    """A typo in --index is likelier than a build still to come: waiting is asked for."""
    if not folder.is_dir():
        raise ServerStartError(
            f"{folder} is not a folder",
            hint="check --index; to start before a first build, create the folder and pass --wait",
        )
    if config.wait_for_index or (folder / CURRENT_FILE).exists():
        return
    raise ServerStartError(
        f"{folder} holds no index version yet",
        hint=f"build one with `clipsearch build SHARDS --out {folder}`, or pass --wait to "
        "serve the first version a build publishes there",
    )


def _health_only_server(
    config: ServerConfig, servicer: health.HealthServicer
) -> tuple[grpc.Server | None, int | None]:
    if config.health_port is None:
        return None, None
    server = grpc.server(ThreadPoolExecutor(2, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(f"{config.host}:{config.health_port}")
    except RuntimeError:  # grpcio >= 1.60 raises where it used to return 0
        port = 0
    if port == 0:
        raise _port_taken("health checks", config.host, config.health_port, "--health-port")
    server.start()
    return server, port


class _Health:
    """The server is SERVING exactly while every index serves a version; each index also
    has its own health entry, `clipsearch.v1.SearchService/NAME`."""

    def __init__(self, servicer: health.HealthServicer, names: list[str]) -> None:
        self.servicer = servicer
        self.serving = dict.fromkeys(names, False)

    def index_serves(self, name: str, serving: bool) -> None:
        self.serving[name] = serving
        status = _status(serving)
        self.servicer.set(f"{SERVICE_NAME}/{name}", status)
        _set_health(self.servicer, all(self.serving.values()))


class _IndexEvents:
    """One index's changes to metrics and health."""

    def __init__(self, name: str, metrics: Metrics, health_: _Health) -> None:
        self.name = name
        self.metrics = metrics
        self.health = health_

    def served(
        self, version: IndexVersion | None, refused: RefusedVersion | None, fallback: bool
    ) -> None:
        self.metrics.served(self.name, version, refused, fallback)
        self.health.index_serves(self.name, version is not None)

    def reload_failed(self) -> None:
        self.metrics.reload_failed(self.name)


def _status(serving: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    if serving:
        return health_pb2.HealthCheckResponse.SERVING
    return health_pb2.HealthCheckResponse.NOT_SERVING


def _set_health(servicer: health.HealthServicer, serving: bool) -> None:
    servicer.set("", _status(serving))
    servicer.set(SERVICE_NAME, _status(serving))


def _model_to_load(config: ServerConfig, index_dir: Path) -> ModelSpec:
    """The model the user named, or else the one the index was built with: the version
    CURRENT names or, when its manifest cannot be read, the newest readable one."""
    if config.model is not None:
        return config.model
    manifest = _newest_manifest(index_dir)
    if manifest.model.startswith("hf-hub:"):
        return ModelSpec(pretrained=manifest.model, device=config.device)
    return ModelSpec(model=manifest.model, pretrained=manifest.pretrained, device=config.device)


def _newest_manifest(index_dir: Path) -> IndexManifest:
    problems = []
    try:
        current = current_version(index_dir)
    except (OSError, UnicodeDecodeError) as err:
        current, problems = None, [f"cannot read CURRENT: {err}"]
    names = list_versions(index_dir)
    candidates = ([current] if current else []) + [
        index_dir / VERSIONS_DIR / n for n in reversed(names)
    ]
    for path in candidates:
        try:
            return IndexManifest.from_json((path / MANIFEST_FILE).read_text())
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{path.name}: {err}")
    if not names and not problems:
        raise ServerStartError(
            f"{index_dir} holds no index yet, so the model to load is unknown: "
            "build one first, or name the model with --model and --pretrained"
        )
    raise ServerStartError(
        f"{index_dir}: no readable manifest to learn the model from ({'; '.join(problems)}); "
        "name the model with --model and --pretrained"
    )
