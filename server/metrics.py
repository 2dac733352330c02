"""Prometheus metrics of one server, in its own registry (several servers can share a process)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from clipsearch.index.version import IndexVersion
from clipsearch.server.core.batcher import BatchObserver
from clipsearch.server.core.index_holder import RefusedVersion

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "clipsearch_requests", "Calls answered, by method, status and face (grpc, http)",
            ["rpc", "code", "face"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "clipsearch_request_seconds", "Server-side latency, by method and face",
            ["rpc", "face"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "clipsearch_batch_size", "Items per batch, by stage (text, image, search)", ["stage"],
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "clipsearch_batch_seconds", "Time to run one batch, by stage", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "clipsearch_queue_depth", "Items waiting to be batched, by stage", ["stage"], registry=r
        )
        self.index_vectors = Gauge(
            "clipsearch_index_vectors", "Searchable vectors in the served index", registry=r
        )
        self.index_version = Gauge(
            "clipsearch_index_version_info", "1 for the served index version", ["version"],
            registry=r,
        )  # fmt: skip
        self.index_refused = Counter(
            "clipsearch_index_refused", "Published index versions refused at load", registry=r
        )
        self.index_fallback = Gauge(
            "clipsearch_index_fallback",
            "1 while serving an older version because the one CURRENT names was refused",
            registry=r,
        )
        self.reload_errors = Counter(
            "clipsearch_index_reload_errors",
            "Checks for a new index version that failed (e.g. CURRENT unreadable)",
            registry=r,
        )
        self._served: str | None = None

    def batch_observer(self, stage: str) -> BatchObserver:
        size, seconds = self.batch_size.labels(stage), self.batch_seconds.labels(stage)

        def observe(items: int, run_s: float) -> None:
            size.observe(items)
            seconds.observe(run_s)

        return observe

    def track_queue(self, stage: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(stage).set_function(depth)

    def served(
        self, version: IndexVersion | None, refused: RefusedVersion | None, fallback: bool
    ) -> None:
        if refused is not None:
            self.index_refused.inc()
        self.index_fallback.set(1 if fallback else 0)
        name = version.name if version is not None else None
        if name != self._served:
            if self._served is not None:
                self.index_version.remove(self._served)
            if name is not None:
                self.index_version.labels(name).set(1)
            self._served = name
        self.index_vectors.set(version.manifest.count if version is not None else 0)

    def reload_failed(self) -> None:
        self.reload_errors.inc()

    def serve(self, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
        """Expose /metrics on an HTTP port; port 0 picks a free one (see server_port)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server, thread
