"""What a hot reload costs as the index grows, and what the server holds in memory.

    make bench-reload   (python -m bench.reload [--sizes 100000,1000000,5000000] [--dim 768]
                         [--workdir DIR] [--no-memory] [--memory-vectors 1000000]
                         [--clients 32] [--seconds 10])

Part 1, in this process with the server's own IndexHolder: for each size N, writes a
version of N synthetic CLIP-like vectors through the real format (vectors.npy float16,
ids.npy, records, fields.parquet, index.faiss, a manifest with checksums; cached in the
workdir) and a copy of it as a second version, then times

  start        the first load of the version: every file hashed
  restart      a new holder loads it again: files trusted from their stamps
  reload warm  while one client searches the served version back to back, CURRENT
               switches to the copy (never verified: hashed in full), its files as the
               copy left them in the page cache
  reload cold  the same with the copy's files evicted from the page cache first

with the phases of each load (manifest, checksums, faiss.read_index, ids/vectors/
records mapped, checks and id sort, warm-up search, swap), for the reloads the time
from CURRENT changing to the first answer of the new version, and the client's latency
before and during the reload (p50/p99/max). Then the growth of each phase with N (the
exponent b of time ~ N^b between the smallest and the largest N).

The index: the codes `clipsearch build` plans for (N, dim) at its default 4 GiB budget
(IVF,Flat up to 1M x 768, IVF,SQ8 at 5M), over 1,024 lists instead of the planned
4,096-8,192. The index file, which the load reads whole, is then the size a real build
writes to within the centroids (12 MB of 3.9 GB at 5M); only k-means, which no load
sees, is cheaper (a real 5M build trains for an hour on 2 cores).

Part 2 (off with --no-memory): `clipsearch serve --model ViT-B-32 --pretrained none`
in a child process on --memory-vectors 512-d vectors (same writer): RSS and PSS from
/proc/PID/smaps_rollup idle, at their peak under --clients clients sending text
queries, and after a hot reload (the previous version stays loaded for page tokens),
with the reload timed through gRPC by one client sending vector queries.

Runs heavy steps one at a time; prints the machine's load average beside each part.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from bench.server_process import serve_process
from bench.synthetic import ClipLikeSpace
from clipsearch.index.fields import FieldSchema, write_fields
from clipsearch.index.manifest import (
    IDS_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    VERSIONS_DIR,
    IndexManifest,
    file_checksums,
)
from clipsearch.index.publish import switch_current
from clipsearch.index.records import Record, RecordWriter
from clipsearch.index.verified import STORE_VAR, StampStore
from clipsearch.indexer.build.job import DEFAULT_BUDGET
from clipsearch.indexer.build.plan import plan_index
from clipsearch.indexer.build.train import training_rows
from clipsearch.models import PreprocessConfig
from clipsearch.server.core.index_holder import IndexHolder, LoadReport
from clipsearch.types import FieldInfo, FieldType
from clipsearch.version import VERSION

SIZES = "100000,1000000,5000000"
NLIST = 1024
NPROBE = 8  # 0.8% of the lists, about what the build tunes on real indexes
CANDIDATES = 100
CHUNK = 100_000
QUERIES = 64
WATCH_S = 0.05  # the holder's poll interval here (the server's default is 2 s)
STEADY_S = 3.0  # the client's baseline before CURRENT changes
SETTLE_S = 1.0  # searching on after the swap
MEMORY_MODEL, MEMORY_DIM = "ViT-B-32", 512
SAMPLE_EVERY_S = 0.2
TIMEOUT_S = 120.0
PHASES = ("manifest", "checksums", "read_index", "map", "check", "warm_up", "swap")


class BenchError(Exception):
    pass


# --- versions written through the real format -------------------------------------------


@dataclass(frozen=True)
class Model:
    name: str
    pretrained: str
    preprocess: PreprocessConfig | None


SYNTHETIC = Model("synthetic", "none", None)


def factory_for(n: int, dim: int) -> str:
    """The planner's codes for (n, dim) at the default budget, over NLIST lists."""
    return re.sub(r"IVF\d+(_HNSW\d+)?", f"IVF{NLIST}", plan_index(n, dim, DEFAULT_BUDGET).factory)


def write_version(index_dir: Path, n: int, dim: int, model: Model) -> Path:
    """v000001 of `index_dir`: n synthetic vectors, written aside and renamed into place
    (reused when a previous run left it)."""
    folder = index_dir / VERSIONS_DIR / "v000001"
    if (folder / MANIFEST_FILE).exists():
        return folder
    work = index_dir / ".writing"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    factory = factory_for(n, dim)
    print(f"  writing {n:,} x {dim} ({factory}) in {index_dir}...", flush=True)
    space = ClipLikeSpace(dim, seed=0)
    vectors = np.lib.format.open_memmap(work / VECTORS_FILE, "w+", np.float16, (n, dim))
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        vectors[start:stop] = space.images(stop - start, seed=1 + start // CHUNK)
    vectors.flush()
    np.save(work / IDS_FILE, np.arange(1, n + 1, dtype=np.int64))
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    index.train(np.asarray(vectors[training_rows(n, 50 * NLIST)], dtype=np.float32))
    for start in range(0, n, CHUNK):
        index.add(np.asarray(vectors[start : start + CHUNK], dtype=np.float32))
    faiss.write_index(index, str(work / INDEX_FILE))
    del index
    with RecordWriter(work) as records:
        records.write(Record(f"item-{i}", None, f'{{"n": {i}}}', 1, 1) for i in range(n))
    schema = FieldSchema((FieldInfo("metadata.n", FieldType.NUMBER),))
    batches = (
        pa.record_batch([pa.array(np.arange(s, min(n, s + CHUNK), dtype=np.float64))],
                        schema=schema.arrow_schema())
        for s in range(0, n, CHUNK)
    )  # fmt: skip
    write_fields(work, batches, schema)
    manifest = IndexManifest(
        version=folder.name, model=model.name, pretrained=model.pretrained, dim=dim,
        preprocess=model.preprocess, factory=factory, count=n, rows=n, nlist=NLIST,
        rerank_candidates=CANDIDATES, default_nprobe=NPROBE, target_recall=0.95,
        recall_curve=[], eval_queries=0, shards_dir="", source_shards=[],
        build_seconds=round(time.monotonic() - started, 2),
        created=datetime.now(UTC).isoformat(timespec="seconds"), clipsearch_version=VERSION,
        fields=list(schema.fields), files=file_checksums(work),
    )  # fmt: skip
    (work / MANIFEST_FILE).write_text(manifest.to_json())
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.rename(work, folder)
    switch_current(index_dir, folder.name)
    print(f"  written in {time.monotonic() - started:.0f} s", flush=True)
    return folder


def copy_version(version: Path, name: str) -> Path:
    """The same files as a new version (fresh files: what a build publishes)."""
    copy = version.parent / name
    if (copy / MANIFEST_FILE).exists():
        return copy
    shutil.rmtree(copy, ignore_errors=True)
    work = version.parent.parent / ".copying"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(version, work, copy_function=shutil.copyfile)
    manifest = IndexManifest.from_json((work / MANIFEST_FILE).read_text())
    (work / MANIFEST_FILE).write_text(replace(manifest, version=name).to_json())
    os.rename(work, copy)
    return copy


def evict(version: Path) -> None:
    """Drop a version's files from the page cache (its own pages only)."""
    for path in version.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident(version: Path) -> float:
    """The fraction of a version's bytes in the page cache (util-linux fincore)."""
    files = [str(p) for p in version.iterdir()]
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", *files],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return float("nan")
    pairs = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    return sum(r for r, _ in pairs) / max(1, sum(s for _, s in pairs))


def settle(version: Path) -> None:
    """Wait until the files are older than the stamps' settling time (a load right after
    writing would not stamp them)."""
    newest = max(p.stat().st_ctime for p in version.iterdir())
    time.sleep(max(0.0, newest + StampStore(version).settle_s + 0.1 - time.time()))


def folder_bytes(version: Path) -> int:
    return sum(p.stat().st_size for p in version.iterdir())


# --- part 1: the holder in this process ---------------------------------------------------


@dataclass(frozen=True)
class Phases:
    seconds: dict[str, float]  # PHASES -> seconds
    hashed_gb: float
    trusted_files: int

    @staticmethod
    def of(report: LoadReport) -> Phases:
        t = report.timings
        values = (t.manifest_s, t.verify_s, t.index_s, t.arrays_s, t.check_s,
                  report.warm_up_s, report.swap_s)  # fmt: skip
        return Phases(
            dict(zip(PHASES, values, strict=True)),
            report.verification.hashed_bytes / 1e9,
            report.verification.trusted_files,
        )

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @staticmethod
    def of(took_s: list[float]) -> Latency:
        if not took_s:
            return Latency(0, math.nan, math.nan, math.nan)
        ms = np.asarray(took_s) * 1000
        return Latency(len(ms), *(float(np.percentile(ms, q)) for q in (50, 99, 100)))


@dataclass(frozen=True)
class Reload:
    phases: Phases
    to_answer_s: float  # CURRENT written -> the first answer of the new version
    resident: float  # of the new version's bytes, when CURRENT changed
    before: Latency
    during: Latency  # queries sent between the switch and that first answer
    failures: int


@dataclass(frozen=True)
class SizeResult:
    n: int
    factory: str
    gb: float  # the version's files
    index_gb: float
    start: Phases
    restart: Phases
    warm: Reload
    cold: Reload


@dataclass
class _Answer:
    sent: float
    took: float
    version: str


def _accept(_: IndexManifest) -> None:
    return None


def _load(index_dir: Path, store: StampStore) -> tuple[IndexHolder, LoadReport]:
    holder = IndexHolder(index_dir, _accept, stamps=store)
    holder.reload()
    if holder.last_load is None:
        raise BenchError(f"{index_dir}: nothing loaded ({holder.refused})")
    return holder, holder.last_load


def _search_loop(
    holder: IndexHolder, queries: np.ndarray, stop: threading.Event, out: list[_Answer],
    errors: list[str],
) -> None:  # fmt: skip
    """One client as the service searches: take `current` once per query, search it."""
    for n in itertools.count():
        if stop.is_set():
            return
        version = holder.current
        assert version is not None
        sent = time.perf_counter()
        try:
            version.search(queries[n % len(queries)][None], 10)
        except (RuntimeError, ValueError, OSError) as err:
            errors.append(f"{type(err).__name__}: {err}")
            continue
        out.append(_Answer(sent, time.perf_counter() - sent, version.name))


def hot_reload(index_dir: Path, old: Path, new: Path, store: StampStore, cold: bool) -> Reload:
    switch_current(index_dir, old.name)
    holder, _ = _load(index_dir, store)
    queries = ClipLikeSpace(holder.current.manifest.dim).images(QUERIES, seed=99)  # type: ignore[union-attr]
    stop, watching = threading.Event(), threading.Event()
    answers: list[_Answer] = []
    errors: list[str] = []
    client = threading.Thread(target=_search_loop, args=(holder, queries, stop, answers, errors))
    client.start()
    holder.watch(WATCH_S, watching)
    try:
        time.sleep(STEADY_S)
        if cold:
            evict(new)
        in_cache = resident(new)
        switched = time.perf_counter()
        switch_current(index_dir, new.name)
        deadline = switched + 3600
        while not any(a.version == new.name for a in answers[-50:]):
            if time.perf_counter() > deadline or holder.refused is not None:
                raise BenchError(f"{new.name} was not served: {holder.refused}")
            time.sleep(0.01)
        time.sleep(SETTLE_S)
    finally:
        watching.set()
        stop.set()
        client.join()
    first_new = min(a.sent + a.took for a in answers if a.version == new.name)
    report = holder.last_load
    assert report is not None and report.version == new.name
    before = [a.took for a in answers if switched - STEADY_S + 0.5 <= a.sent < switched]
    during = [a.took for a in answers if switched <= a.sent < first_new]
    return Reload(
        Phases.of(report), first_new - switched, in_cache, Latency.of(before),
        Latency.of(during), len(errors),
    )  # fmt: skip


def measure_size(workdir: Path, n: int, dim: int, keep: bool) -> SizeResult:
    index_dir = workdir / f"n{n}-d{dim}"
    old = write_version(index_dir, n, dim, SYNTHETIC)
    new = copy_version(old, "v000002")
    stamps = Path(tempfile.mkdtemp(prefix="stamps-", dir=workdir))
    try:
        store = StampStore(stamps)
        switch_current(index_dir, old.name)
        settle(old)
        holder, start = _load(index_dir, store)
        del holder
        holder, restart = _load(index_dir, store)
        del holder
        warm = hot_reload(index_dir, old, new, store, cold=False)
        # A fresh store: the copy, stamped by the warm reload, must be hashed again.
        shutil.rmtree(stamps)
        cold = hot_reload(index_dir, old, new, store, cold=True)
    finally:
        shutil.rmtree(stamps, ignore_errors=True)
    result = SizeResult(
        n, factory_for(n, dim), folder_bytes(old) / 1e9, (old / INDEX_FILE).stat().st_size / 1e9,
        Phases.of(start), Phases.of(restart), warm, cold,
    )  # fmt: skip
    if not keep:
        shutil.rmtree(index_dir)
    return result


def growth(ns: list[int], seconds: list[float]) -> float:
    """b in seconds ~ N^b, between the smallest and the largest N."""
    if len(ns) < 2 or min(seconds) <= 0:
        return math.nan
    return math.log(seconds[-1] / seconds[0]) / math.log(ns[-1] / ns[0])


def print_sizes(results: list[SizeResult]) -> None:
    print("\nversions")
    print(f"{'N':>10} {'factory':<14} {'files GB':>9} {'index GB':>9}")
    for r in results:
        print(f"{r.n:>10,} {r.factory:<14} {r.gb:>9.2f} {r.index_gb:>9.2f}")
    loads: list[tuple[str, Callable[[SizeResult], Phases]]] = [
        ("start (nothing stamped)", lambda r: r.start),
        ("restart (stamped)", lambda r: r.restart),
        ("hot reload, warm page cache", lambda r: r.warm.phases),
        ("hot reload, cold page cache", lambda r: r.cold.phases),
    ]
    for title, pick in loads:
        print(f"\n{title}: seconds per phase")
        heads = " ".join(f"{p:>10}" for p in PHASES)
        print(f"{'N':>10} {heads} {'total':>8} {'hashed GB':>9} {'hash GB/s':>9} {'read GB/s':>9}")
        for r in results:
            phases = pick(r)
            cells = " ".join(f"{phases.seconds[p]:>10.4f}" for p in PHASES)
            # Per byte: the phases follow the files' sizes, which do not grow as N does
            # when the planner changes codes (Flat at 1M, SQ8 at 5M).
            hashing = phases.hashed_gb / phases.seconds["checksums"] if phases.hashed_gb else 0
            reading = r.index_gb / phases.seconds["read_index"]
            print(
                f"{r.n:>10,} {cells} {phases.total_s:>8.2f} {phases.hashed_gb:>9.2f} "
                f"{hashing:>9.2f} {reading:>9.2f}"
            )
        ns = [r.n for r in results]
        slopes = " ".join(
            f"{growth(ns, [pick(r).seconds[p] for r in results]):>10.2f}" for p in PHASES
        )
        total = growth(ns, [pick(r).total_s for r in results])
        print(f"{'N^b, b =':>10} {slopes} {total:>8.2f}")
    print("\nhot reload: CURRENT written -> first answer of the new version, and one client's")
    print("latency before and during the reload (ms)")
    print(
        f"{'N':>10} {'cache':<5} {'resident':>8} {'to answer s':>11} {'before p50/p99/max':>22} "
        f"{'during n':>8} {'during p50/p99/max':>22} {'failed':>6}"
    )
    for r in results:
        for name, reload in (("warm", r.warm), ("cold", r.cold)):
            b, d = reload.before, reload.during
            print(
                f"{r.n:>10,} {name:<5} {reload.resident:>8.0%} {reload.to_answer_s:>11.2f} "
                f"{b.p50_ms:>6.2f} /{b.p99_ms:>6.2f} /{b.max_ms:>6.1f} {d.count:>8} "
                f"{d.p50_ms:>6.2f} /{d.p99_ms:>6.2f} /{d.max_ms:>6.1f} {reload.failures:>6}"
            )
    ns = [r.n for r in results]
    warm = growth(ns, [r.warm.to_answer_s for r in results])
    cold = growth(ns, [r.cold.to_answer_s for r in results])
    print(f"growth of CURRENT -> answering: warm N^{warm:.2f}, cold N^{cold:.2f}")


# --- part 2: the server's memory, through its command line ------------------------------


@dataclass(frozen=True)
class Memory:
    rss_mb: float
    pss_mb: float
    anon_mb: float  # private: the index's codes, the model, Python's heap
    file_mb: float  # mapped files in RSS: vectors read for re-ranking, libraries

    @staticmethod
    def of(pid: int) -> Memory:
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, value = line.split(":", 1)
            fields[key] = int(value.split()[0]) / 1024
        return Memory(
            fields["Rss"], fields["Pss"], fields["Anonymous"], fields["Rss"] - fields["Anonymous"]
        )

    def row(self, what: str) -> str:
        sizes = (self.rss_mb, self.pss_mb, self.anon_mb, self.file_mb)
        return f"{what:<36} " + " ".join(f"{mb:>8.0f}" for mb in sizes)


def peak(samples: list[Memory]) -> Memory:
    return Memory(
        *(max(getattr(m, f) for m in samples) for f in ("rss_mb", "pss_mb", "anon_mb", "file_mb"))
    )


@dataclass(frozen=True)
class Served:
    pid: int
    target: str
    log: Path


@contextmanager
def serving(index_dir: Path, workdir: Path) -> Iterator[Served]:
    cli = Path(sys.executable).with_name("clipsearch")
    log = workdir / "server.log"
    argv = [str(cli), "serve", "--index", str(index_dir), "--model", MEMORY_MODEL,
            "--pretrained", "none", "--port", "0", "--metrics-port", "-1",
            "--reload-interval", str(WATCH_S), "--log-format", "json"]  # fmt: skip
    env = {**os.environ, STORE_VAR: str(workdir / "stamps")}
    with serve_process(argv, log, TIMEOUT_S, env) as (process, target):
        yield Served(process.pid, target, log)


def loaded_events(log: Path) -> list[dict[str, object]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "index_loaded":
            events.append(entry)
    return events


def memory_model() -> Model:
    from clipsearch.encoder import load_encoder
    from clipsearch.models import ModelSpec

    info = load_encoder(ModelSpec(MEMORY_MODEL, "none", device="cpu")).info
    return Model(MEMORY_MODEL, "none", info.preprocess)


def text_load(target: str, clients: int, seconds: float, pid: int) -> tuple[list[Memory], int, int]:
    """`clients` threads sending text queries for `seconds`; memory sampled meanwhile."""
    from clipsearch.client import RpcError, SearchClient, TextQuery

    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def client_loop(offset: int) -> None:
        with SearchClient(target, timeout_s=TIMEOUT_S) as client:
            for n in itertools.count(offset):
                if stop.is_set():
                    return
                try:
                    client.search(TextQuery(f"a photo of thing {n % 500}"), top_k=10)
                    outcome = "ok"
                except RpcError:
                    outcome = "failed"
                with lock:
                    counts[outcome] += 1

    threads = [threading.Thread(target=client_loop, args=(i * 37,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    samples = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        samples.append(Memory.of(pid))
        time.sleep(SAMPLE_EVERY_S)
    stop.set()
    for thread in threads:
        thread.join()
    return samples, counts["ok"], counts["failed"]


def grpc_reload(served: Served, index_dir: Path, new: str, dim: int) -> Reload:
    """One client sending vector queries while CURRENT switches to `new`."""
    from clipsearch.client import RpcError, SearchClient, VectorQuery

    queries = ClipLikeSpace(dim).images(QUERIES, seed=99)
    answers: list[_Answer] = []
    failures: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        with SearchClient(served.target, timeout_s=TIMEOUT_S) as client:
            for n in itertools.count():
                if stop.is_set():
                    return
                sent = time.perf_counter()
                try:
                    version = client.search(
                        VectorQuery(queries[n % QUERIES]), top_k=10
                    ).index_version
                except RpcError as err:
                    failures.append(str(err))
                    continue
                answers.append(_Answer(sent, time.perf_counter() - sent, version))

    client = threading.Thread(target=client_loop)
    client.start()
    try:
        time.sleep(STEADY_S)
        switched = time.perf_counter()
        switch_current(index_dir, new)
        deadline = switched + 600
        while not any(a.version == new for a in answers[-50:]) and time.perf_counter() < deadline:
            time.sleep(0.01)
        time.sleep(SETTLE_S)
    finally:
        stop.set()
        client.join()
    news = [a.sent + a.took for a in answers if a.version == new]
    if not news:
        raise BenchError(f"{new} never answered; see {served.log}")
    first_new = min(news)
    event = loaded_events(served.log)[-1]
    phases_s = event["phases_s"]
    assert isinstance(phases_s, dict)
    keys = ("manifest_s", "verify_s", "index_s", "arrays_s", "check_s", "warm_up_s", "swap_s")
    phases = Phases(
        {p: float(phases_s[k]) for p, k in zip(PHASES, keys, strict=True)},
        float(event["hashed_bytes"]) / 1e9,  # type: ignore[arg-type]
        int(event["trusted_files"]),  # type: ignore[call-overload]
    )
    before = [a.took for a in answers if switched - STEADY_S + 0.5 <= a.sent < switched]
    during = [a.took for a in answers if switched <= a.sent < first_new]
    return Reload(phases, first_new - switched, math.nan, Latency.of(before),
                  Latency.of(during), len(failures))  # fmt: skip


def measure_memory(workdir: Path, n: int, clients: int, seconds: float, keep: bool) -> int:
    """Prints the server's memory; returns the failed requests."""
    index_dir = workdir / f"serve-n{n}-d{MEMORY_DIM}"
    old = write_version(index_dir, n, MEMORY_DIM, memory_model())
    new = copy_version(old, "v000002")
    switch_current(index_dir, old.name)
    shutil.rmtree(workdir / "stamps", ignore_errors=True)
    print(f"\nserver memory: {MEMORY_MODEL} (random init) on {n:,} x {MEMORY_DIM} "
          f"({factory_for(n, MEMORY_DIM)}, files {folder_bytes(old) / 1e9:.2f} GB, "
          f"index {(old / INDEX_FILE).stat().st_size / 1e9:.2f} GB); {load_average()}")  # fmt: skip
    with serving(index_dir, workdir) as served:
        time.sleep(2.0)
        idle = Memory.of(served.pid)
        samples, ok, failed = text_load(served.target, clients, seconds, served.pid)
        after_load = Memory.of(served.pid)
        reload = grpc_reload(served, index_dir, new.name, MEMORY_DIM)
        time.sleep(1.0)
        after_reload = Memory.of(served.pid)
    print(f"{'':<36} {'RSS MB':>8} {'PSS MB':>8} {'anon MB':>8} {'file MB':>8}")
    print(idle.row("idle, after start"))
    print(peak(samples).row(f"peak under {clients} clients ({ok:,} ok, {failed} failed)"))
    print(after_load.row("after the load"))
    print(after_reload.row("after a hot reload (2 versions held)"))
    b, d = reload.before, reload.during
    print(
        f"hot reload through gRPC (one client, vector queries): CURRENT -> answering "
        f"{reload.to_answer_s:.2f} s (load {reload.phases.total_s:.2f} s: checksums "
        f"{reload.phases.seconds['checksums']:.2f}, read_index "
        f"{reload.phases.seconds['read_index']:.2f}); latency before p50 {b.p50_ms:.2f} / "
        f"p99 {b.p99_ms:.2f} / max {b.max_ms:.1f} ms, during ({d.count} queries) p50 "
        f"{d.p50_ms:.2f} / p99 {d.p99_ms:.2f} / max {d.max_ms:.1f} ms; "
        f"{reload.failures} failed"
    )
    if not keep:
        shutil.rmtree(index_dir)
    return failed + reload.failures


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clipsearch-bench-reload"))
    parser.add_argument("--sizes", default=SIZES, help="vectors per index, comma-separated")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--no-memory", action="store_true", help="skip the server's memory")
    parser.add_argument("--memory-vectors", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="of the text load")
    parser.add_argument(
        "--keep", action="store_true", help="keep the indexes for the next run (5M: 24 GB)"
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    results = []
    for n in sizes:
        print(f"{n:,} x {args.dim}: {load_average()}", flush=True)
        results.append(measure_size(args.workdir, n, args.dim, args.keep))
    if results:
        print_sizes(results)
    failed = sum(r.warm.failures + r.cold.failures for r in results)
    if not args.no_memory:
        failed += measure_memory(
            args.workdir, args.memory_vectors, args.clients, args.seconds, args.keep
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
