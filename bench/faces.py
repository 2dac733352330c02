"""The HTTP face against the gRPC face of one server: is HTTP a bottleneck?

    make bench-faces   (python -m bench.faces [--server-cli PATH] [--workdir DIR]
                        [--seconds 8] [--clients 1,32] [--slices 4])

Starts one server through its command line (`clipsearch serve --index INDEX --port 0
--http-port P --metrics-port -1`) on an index of 100k synthetic 512-d vectors (ViT-B-32,
random init; bench.serve_qps.prepare builds it once and caches it in the workdir, shared
with `make bench-serve`), and drives both faces with the same two operations:

  search   gRPC Search (a text query, top_k 10)  against  HTTP POST /v1/search
  embed    gRPC Embed (one text)                 against  HTTP POST /v1/embeddings (OpenAI,
                                                           base64 as its client sends)

At each concurrency level the two faces take turns in --slices short runs each (after a
short warm-up), --seconds in all per face: on a shared machine the model's speed drifts
by tens of percent within a minute, and alternating exposes both faces to the same drift.
Prints requests/s, client p50/p99 latency and failures per run, then HTTP against gRPC
measured in the same run: the throughput ratio at the most clients (target: at least
x0.90) and the p50 difference at the fewest (target: at most +10 ms). Last, times
`clipsearch health` (the same --server-cli) against the running server: median wall time
of 5 runs and peak RSS (from /usr/bin/time).

The load generator speaks only the wire protocols: gRPC through clipsearch.client.
SearchClient (the wire format has not changed), HTTP through http.client with one
keep-alive connection per client thread and JSON bodies. So `--server-cli
/work/baseline/.venv/bin/clipsearch` measures an older server the same way. The clients
are threads in this process and share the machine's cores with the server (2 on CI):
their CPU, which differs between faces (JSON parsing in Python against gRPC's C core),
is in the figures. Every exception, non-200 answer or malformed reply is counted as a
failure and reported; the exit status is 1 if there was any.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bench.serve_qps import DIM, MODEL, prepare, queries
from bench.server_process import serve_process
from clipsearch.client import SearchClient, TextQuery

VECTORS = 100_000
TOP_K = 10
WARMUP_S = 1.0
TIMEOUT_S = 60.0
HEALTH_RUNS = 5
GNU_TIME = "/usr/bin/time"
THROUGHPUT_TARGET = 0.9  # HTTP / gRPC requests/s at the most clients
P50_TARGET_MS = 10.0  # HTTP p50 minus gRPC p50 at the fewest clients
FACES = ("gRPC", "HTTP")
Json = Any  # a parsed JSON document


class Session(Protocol):
    """One client's connection to one face, sending one operation."""

    def call(self, text: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Operation:
    """One request over each face; a reply whose size is not `expected` is a failure."""

    name: str
    expected: int  # hits per search, or dimensions per embedding
    grpc: Callable[[SearchClient, str], int]  # sends a text, returns the reply's size
    path: str  # the HTTP route
    body: Callable[[str], dict[str, object]]  # a text as the HTTP request's JSON
    size: Callable[[Json], int]  # the HTTP reply's size


OPERATIONS = (
    Operation(
        "search",
        TOP_K,
        lambda client, text: len(client.search(TextQuery(text), top_k=TOP_K).hits),
        "/v1/search",
        lambda text: {"text": text, "top_k": TOP_K},
        lambda reply: len(reply["hits"]),
    ),
    Operation(
        "embed",
        DIM,
        lambda client, text: int(client.embed(texts=[text]).texts.shape[1]),
        "/v1/embeddings",
        # base64, as OpenAI's own client asks by default: 512 floats as JSON text would
        # measure Python's float formatting and parsing on both ends, not the face.
        lambda text: {"model": MODEL, "input": text, "encoding_format": "base64"},
        lambda reply: len(base64.b64decode(reply["data"][0]["embedding"])) // 4,
    ),
)


class BenchError(Exception):
    pass


class GrpcSession:
    def __init__(self, target: str, operation: Operation) -> None:
        self._client = SearchClient(target, timeout_s=TIMEOUT_S)
        self._operation = operation

    def call(self, text: str) -> None:
        _expect(self._operation, self._operation.grpc(self._client, text))

    def close(self) -> None:
        self._client.close()


class HttpSession:
    def __init__(self, host: str, port: int, operation: Operation) -> None:
        self._connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        self._operation = operation

    def call(self, text: str) -> None:
        body = json.dumps(self._operation.body(text)).encode()
        try:
            self._connection.request(
                "POST", self._operation.path, body, {"Content-Type": "application/json"}
            )
            response = self._connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self._connection.close()  # the next call opens a new connection
            raise
        if response.status != 200:
            raise BenchError(f"HTTP {response.status}: {payload[:300].decode(errors='replace')}")
        _expect(self._operation, self._operation.size(json.loads(payload)))

    def close(self) -> None:
        self._connection.close()


def _expect(operation: Operation, size: int) -> None:
    if size != operation.expected:
        raise BenchError(f"{operation.name}: a reply of size {size}, not {operation.expected}")


@dataclass(frozen=True)
class Server:
    cli: Path
    host: str
    grpc_port: int
    http_port: int

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def session(self, face: str, operation: Operation) -> Session:
        if face == "gRPC":
            return GrpcSession(self.grpc_target, operation)
        return HttpSession(self.host, self.http_port, operation)


@dataclass(frozen=True)
class Cell:
    operation: str
    face: str
    clients: int
    requests: int
    failures: int
    qps: float
    p50_ms: float
    p99_ms: float
    first_error: str  # "" when nothing failed


@dataclass(frozen=True)
class Run:
    """One face's share of a slice: what each request took, what failed, how long."""

    latencies_ms: list[float]
    errors: list[str]
    seconds: float


@dataclass(frozen=True)
class HealthRuns:
    median_s: float
    peak_rss_mb: float
    failures: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(cli: Path, index: Path, log: Path) -> Iterator[Server]:
    """`cli serve` in a subprocess, its stderr in `log`, until the block ends (SIGTERM)."""
    http_port = free_port()
    argv = [str(cli), "serve", "--index", str(index), "--port", "0"]
    argv += ["--http-port", str(http_port), "--metrics-port", "-1"]
    with serve_process(argv, log, TIMEOUT_S) as (_, target):
        host, port = target.rsplit(":", 1)
        yield Server(cli, host, int(port), http_port)


def drive(
    server: Server, face: str, operation: Operation, clients: int, seconds: float, texts: list[str]
) -> Run:
    """`clients` threads send `operation` back to back for a warm-up, then for `seconds`."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_at = time.perf_counter() + WARMUP_S
    end_at = start_at + seconds

    def client_loop(offset: int) -> None:
        mine: list[float] = []
        failed: list[str] = []
        session = server.session(face, operation)
        try:
            for n in itertools.count(offset):
                sent = time.perf_counter()
                if sent >= end_at:
                    break
                try:
                    session.call(texts[n % len(texts)])
                except Exception as err:  # every failure is counted, the first one reported
                    failed.append(f"{type(err).__name__}: {err}")
                    continue
                if sent >= start_at:
                    mine.append((time.perf_counter() - sent) * 1000)
        finally:
            session.close()
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=client_loop, args=(i * 7,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Run(latencies, errors, time.perf_counter() - start_at)


def interleaved(
    server: Server, operation: Operation, clients: int, seconds: float, slices: int,
    texts: list[str],
) -> list[Cell]:  # fmt: skip
    """Both faces, taking turns slice by slice; one cell per face over all its slices."""
    runs: dict[str, list[Run]] = {face: [] for face in FACES}
    for _ in range(slices):
        for face in FACES:
            runs[face].append(drive(server, face, operation, clients, seconds / slices, texts))
    cells = []
    for face, parts in runs.items():
        latencies = [ms for run in parts for ms in run.latencies_ms]
        errors = [err for run in parts for err in run.errors]
        took = np.asarray(latencies) if latencies else np.asarray([float("nan")])
        cells.append(
            Cell(
                operation.name,
                face,
                clients,
                len(latencies),
                len(errors),
                len(latencies) / sum(run.seconds for run in parts),
                float(np.percentile(took, 50)),
                float(np.percentile(took, 99)),
                errors[0] if errors else "",
            )
        )
    return cells


def time_health(cli: Path, target: str, runs: int, report: Path) -> HealthRuns:
    """`cli health --server target`, `runs` times: wall time, and peak RSS as GNU time
    reports it in `report`. (The rusage of a child started from here would not do: Linux
    keeps a process's RSS high-water mark across exec, so the child would report this
    process's memory.)"""
    walls: list[float] = []
    peaks_kb: list[int] = []
    failures = 0
    argv = [GNU_TIME, "-f", "%M", "-o", str(report), str(cli), "health", "--server", target]
    for _ in range(runs):
        sent = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, check=False)  # stderr shows
        walls.append(time.perf_counter() - sent)
        peaks_kb.append(int(report.read_text().split()[-1]))  # after any "exited with" line
        failures += done.returncode != 0
    return HealthRuns(statistics.median(walls), max(peaks_kb) / 1024, failures)


def _row(cell: Cell) -> str:
    return (
        f"{cell.operation:<7} {cell.face:<5} {cell.clients:>7} {cell.qps:>9.1f} "
        f"{cell.p50_ms:>8.1f} {cell.p99_ms:>8.1f} {cell.requests:>8} {cell.failures:>8}"
    )


def _comparison(cells: list[Cell], levels: list[int]) -> list[str]:
    """HTTP against gRPC per operation and level, and the two targets."""
    by_key = {(c.operation, c.face, c.clients): c for c in cells}
    lines = ["\nHTTP against gRPC, same run and server:"]
    for operation in OPERATIONS:
        ratio: dict[int, float] = {}
        extra: dict[int, float] = {}
        for clients in levels:
            grpc = by_key[operation.name, "gRPC", clients]
            http = by_key[operation.name, "HTTP", clients]
            ratio[clients] = http.qps / grpc.qps
            extra[clients] = http.p50_ms - grpc.p50_ms
            lines.append(
                f"  {operation.name:<7} {clients:>3} clients: requests/s x{ratio[clients]:.2f}, "
                f"p50 {extra[clients]:+.1f} ms, p99 {http.p99_ms - grpc.p99_ms:+.1f} ms"
            )
        most, fewest = max(levels), min(levels)
        lines.append(
            f"  {operation.name:<7} targets: requests/s at {most} clients x{ratio[most]:.2f} "
            f"(>= x{THROUGHPUT_TARGET:.2f}: {_verdict(ratio[most] >= THROUGHPUT_TARGET)}), "
            f"p50 at {fewest} client(s) {extra[fewest]:+.1f} ms "
            f"(<= +{P50_TARGET_MS:g} ms: {_verdict(extra[fewest] <= P50_TARGET_MS)})"
        )
    return lines


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--server-cli",
        type=Path,
        default=Path(sys.executable).parent / "clipsearch",
        help="the clipsearch command whose server is measured (default: this venv's)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clipsearch-bench-serve"))
    parser.add_argument("--seconds", type=float, default=8.0, help="per face and level")
    parser.add_argument("--clients", default="1,32", help="concurrency levels")
    parser.add_argument(
        "--slices", type=int, default=4, help="turns each face takes per level (default: 4)"
    )
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    index = prepare(args.workdir, VECTORS)
    texts = queries()
    print(f"server: {args.server_cli}; {_load()}", flush=True)
    print(
        f"{'op':<7} {'face':<5} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'requests':>8} {'failures':>8}",
        flush=True,
    )
    cells: list[Cell] = []
    with serving(args.server_cli, index, args.workdir / "faces-server.log") as server:
        for operation in OPERATIONS:
            for clients in levels:
                level = interleaved(server, operation, clients, args.seconds, args.slices, texts)
                cells += level
                for cell in level:
                    print(_row(cell), flush=True)
        report = args.workdir / "faces-health-time.txt"
        health = time_health(server.cli, server.grpc_target, HEALTH_RUNS, report)
    print("\n".join(_comparison(cells, levels)))
    print(
        f"\n`clipsearch health`, {HEALTH_RUNS} runs: median {health.median_s * 1000:.0f} ms, "
        f"peak RSS {health.peak_rss_mb:.0f} MB, {health.failures} failed"
    )
    failed = [c for c in cells if c.failures]
    for cell in failed:
        print(f"FAILED {cell.operation} {cell.face} {cell.clients} clients: {cell.first_error}")
    print(_load())
    return 1 if failed or health.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
