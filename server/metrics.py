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
        # Batches: `of` is the model for text and image stages, the index for search.
        self.batch_size = Histogram(
            "clipsearch_batch_size", "Items per batch, by stage (text, image, search)",
            ["stage", "of"], buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "clipsearch_batch_seconds", "Time to run one batch, by stage", ["stage", "of"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "clipsearch_queue_depth", "Items waiting to be batched, by stage", ["stage", "of"],
            registry=r,
        )  # fmt: skip
        self.calls_at_work = Gauge(
            "clipsearch_calls_at_work", "Calls holding one of the --max-concurrent slots",
            registry=r,
        )  # fmt: skip
        self.calls_waiting = Gauge(
            "clipsearch_calls_waiting", "Calls waiting for a slot, up to --max-waiting",
            registry=r,
        )  # fmt: skip
        self.index_vectors = Gauge(
            "clipsearch_index_vectors", "Searchable vectors in the served version", ["index"],
            registry=r,
        )  # fmt: skip
        self.index_version = Gauge(
            "clipsearch_index_version_info", "1 for the served index version",
            ["index", "version"], registry=r,
        )  # fmt: skip
        self.index_refused = Counter(
            "clipsearch_index_refused", "Published index versions refused at load", ["index"],
            registry=r,
        )  # fmt: skip
        self.index_fallback = Gauge(
            "clipsearch_index_fallback",
            "1 while serving an older version because the one CURRENT names was refused",
            ["index"], registry=r,
        )  # fmt: skip
        self.reload_errors = Counter(
            "clipsearch_index_reload_errors",
            "Checks for a new index version that failed (e.g. CURRENT unreadable)",
            ["index"], registry=r,
        )  # fmt: skip
        self._served: dict[str, str] = {}  # index -> the version its info metric names

    def batch_observer(self, of: str) -> Callable[[str], BatchObserver]:
        """Observers of the batches of one model or index, by stage."""

        def for_stage(stage: str) -> BatchObserver:
            return self._observer(stage, of)

        return for_stage

    def _observer(self, stage: str, of: str) -> BatchObserver:
        size = self.batch_size.labels(stage, of)
        seconds = self.batch_seconds.labels(stage, of)

        def observe(items: int, run_s: float) -> None:
            size.observe(items)
            seconds.observe(run_s)

        return observe

    def track_queue(self, stage: str, of: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(stage, of).set_function(depth)

    def track_calls(self, at_work: Callable[[], int], waiting: Callable[[], int]) -> None:
        self.calls_at_work.set_function(at_work)
        self.calls_waiting.set_function(waiting)

    def index_started(self, index: str) -> None:
        """Export an index's counters at 0 from the start, so rates exist before events."""
        self.index_refused.labels(index)
        self.reload_errors.labels(index)

    def served(
        self,
        index: str,
        version: IndexVersion | None,
        refused: RefusedVersion | None,
        fallback: bool,
    ) -> None:
        if refused is not None:
            self.index_refused.labels(index).inc()
        self.index_fallback.labels(index).set(1 if fallback else 0)
        name = version.name if version is not None else None
        if name != self._served.get(index):
            if index in self._served:
                self.index_version.remove(index, self._served.pop(index))
            if name is not None:
                self.index_version.labels(index, name).set(1)
                self._served[index] = name
        self.index_vectors.labels(index).set(version.manifest.count if version is not None else 0)

    def reload_failed(self, index: str) -> None:
        self.reload_errors.labels(index).inc()

    def serve(self, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
        """Expose /metrics on an HTTP port; port 0 picks a free one (see server_port)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server, thread
