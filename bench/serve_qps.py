"""Text-query throughput of the gRPC server: dynamic batching against per-request encoding.

    make bench-serve        (python -m bench.serve_qps [--vectors 100000] [--seconds 8])
    python -m bench.serve_qps --device cuda --model ViT-L-14 --clients 1,256 --encoder-alone

Builds an index of synthetic vectors of the model's dimension (embedding 100k images on
2 cores takes hours), then serves it twice, one after the other, in a child process, with
the capacity defaults `clipsearch serve` picks for the device:

  batched       dynamic batching, text batches cut to their longest real sequence
  per-request   each query encoded alone at the full 77-token context (no batching)

and drives each with 1, 8 and 32 concurrent clients (--clients) sending short text
queries, from one client process on CPU and four on CUDA (--client-processes). Prints
QPS, client p50/p99 latency, the server's own overhead per request (its total time minus
queueing, encoding and searching), failed calls, and the ratio batched / per-request at
each concurrency. --encoder-alone first measures the encoder by itself on the same texts
at the server's batch size (tokenise + encode, texts/s) and prints each batched rate as a
fraction of it. All in the same run; the model has random weights.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

MODEL, PRETRAINED, DIM = "ViT-B-32", "none", 512
CALL_TIMEOUT_S = 60.0
ADJECTIVES = ("red", "old", "small", "wooden", "snowy", "bright", "rusty", "striped")
NOUNS = ("bicycle", "cat", "house", "boat", "mountain", "teapot", "guitar", "bridge")
PLACES = ("in the snow", "at night", "on a beach", "in a forest", "under the rain", "")


@dataclass(frozen=True)
class Cell:
    mode: str
    clients: int
    qps: float
    p50_ms: float
    p99_ms: float
    overhead_p50_ms: float
    transport_p50_ms: float
    queue_p50_ms: float
    encode_p50_ms: float
    search_p50_ms: float
    failed: int


def queries() -> list[str]:
    return [
        f"a photo of a {a} {n} {p}".strip()
        for a, n, p in itertools.product(ADJECTIVES, NOUNS, PLACES)
    ]


def prepare(workdir: Path, n: int, model: str = MODEL) -> Path:
    """An index of `n` synthetic vectors standing for `model`'s image embeddings."""
    from bench.synthetic import ClipLikeSpace, write_synthetic_shards
    from clipsearch.collection.manifest import EmbeddingFormat, VectorDtype
    from clipsearch.encoder import load_encoder
    from clipsearch.index.manifest import current_version
    from clipsearch.indexer import BuildConfig, run_build
    from clipsearch.models import ModelSpec

    folder = workdir if model == MODEL else workdir / model
    index = folder / "index"
    if current_version(index) is not None:
        return index
    info = load_encoder(ModelSpec(model, PRETRAINED, device="cpu")).info
    fmt = EmbeddingFormat(model, PRETRAINED, info.dim, info.preprocess, VectorDtype.FLOAT16, False)
    print(f"writing {n:,} synthetic {info.dim}-d vectors and building the index...", flush=True)
    vectors = ClipLikeSpace(info.dim, 256, seed=0).images(n, seed=0)
    write_synthetic_shards(folder / "shards", vectors, shard_size=50_000, fmt=fmt)
    run_build(BuildConfig(folder / "shards", index, eval_queries=200))
    return index


def serve(index: str, mode: str, model: str, device: str, conn: Connection) -> None:
    """Child process: serve `index` in `mode` until told to stop, sized as `clipsearch serve`
    sizes itself for `device`."""
    from clipsearch.encoder import load_encoder
    from clipsearch.models import ModelSpec
    from clipsearch.server.app import start
    from clipsearch.server.config import NamedIndex, ServerConfig
    from clipsearch.server.core.config import BatchingConfig, device_defaults

    encoder = load_encoder(ModelSpec(model, PRETRAINED, device=device))
    sized = device_defaults(device)
    batching = BatchingConfig(max_batch=sized.max_batch, max_queue=sized.max_queue)
    if mode == "per-request":
        encoder.trim_text = False
        batching = BatchingConfig(max_batch=1, max_wait_ms=0, max_queue=sized.max_queue)
    config = ServerConfig(
        NamedIndex.of(Path(index)), port=0, metrics_port=None, batching=batching,
        max_concurrent_rpcs=sized.max_concurrent, max_waiting_rpcs=sized.max_waiting,
    )  # fmt: skip
    running = start(config, encoder)
    conn.send(running.port)
    conn.recv()
    running.stop(1)


def drive(target: str, clients: int, seconds: float, texts: list[str], processes: int = 1) -> Cell:
    """`clients` concurrent clients for `seconds`, as threads of `processes` processes."""
    processes = max(1, min(processes, clients))
    if processes == 1:
        rows, failed, elapsed = _client_threads(target, clients, 0, seconds, texts)
    else:
        rows, failed, elapsed = _client_processes(target, clients, seconds, texts, processes)
    if not rows:
        nan = float("nan")
        return Cell("", clients, 0.0, nan, nan, nan, nan, nan, nan, nan, failed)
    took, inner, transport, queue, encode, search = (np.asarray(c) for c in zip(*rows, strict=True))
    return Cell(
        "",
        clients,
        len(rows) / elapsed,
        float(np.percentile(took, 50)),
        float(np.percentile(took, 99)),
        float(np.median(inner)),
        float(np.median(transport)),
        float(np.median(queue)),
        float(np.median(encode)),
        float(np.median(search)),
        failed,
    )


Rows = list[tuple[float, ...]]


def _client_threads(
    target: str,
    clients: int,
    first: int,
    seconds: float,
    texts: list[str],
    ready: Callable[[], None] = lambda: None,
) -> tuple[Rows, int, float]:
    """Client threads that connect and warm up, start together (after `ready` returns),
    then send queries for `seconds`: their rows, failed calls and the seconds they ran."""
    from clipsearch.client import RpcError, SearchClient, TextQuery

    rows: Rows = []
    failed = 0
    lock = threading.Lock()
    warmed = threading.Barrier(clients + 1)
    go = threading.Event()
    end_at = [0.0]

    def client_loop(offset: int) -> None:
        nonlocal failed
        mine: Rows = []
        errors = 0
        with SearchClient(target, timeout_s=CALL_TIMEOUT_S) as client:
            client.search(TextQuery("warm up"), top_k=10)
            warmed.wait()
            go.wait()
            for n in itertools.count(offset):
                sent = time.perf_counter()
                try:
                    result = client.search(TextQuery(texts[n % len(texts)]), top_k=10)
                except RpcError:
                    errors += 1
                else:
                    took = (time.perf_counter() - sent) * 1000
                    t = result.timing
                    inner = t.total_ms - t.queue_ms - t.encode_ms - t.search_ms
                    mine.append((took, inner, took - t.total_ms, t.queue_ms, t.encode_ms,
                                 t.search_ms))  # fmt: skip
                if time.monotonic() >= end_at[0]:
                    break
        with lock:
            rows.extend(mine)
            failed += errors

    threads = [
        threading.Thread(target=client_loop, args=((first + i) * 7,)) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    warmed.wait()
    ready()
    started = time.monotonic()
    end_at[0] = started + seconds
    go.set()
    for thread in threads:
        thread.join()
    return rows, failed, time.monotonic() - started


def _client_process(
    target: str, clients: int, first: int, seconds: float, texts: list[str], conn: Connection
) -> None:
    def ready() -> None:
        conn.send("ready")
        conn.recv()

    conn.send(_client_threads(target, clients, first, seconds, texts, ready))


def _client_processes(
    target: str, clients: int, seconds: float, texts: list[str], processes: int
) -> tuple[Rows, int, float]:
    """The clients spread over processes, so their own GIL does not cap the rate."""
    context = mp.get_context("spawn")
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    pipes, children = [], []
    for i, share in enumerate(shares):
        parent, child = context.Pipe()
        first = sum(shares[:i])
        args = (target, share, first, seconds, texts, child)
        children.append(context.Process(target=_client_process, args=args))
        children[-1].start()
        pipes.append(parent)
    for pipe in pipes:
        pipe.recv()  # every client connected and warmed up
    for pipe in pipes:
        pipe.send("go")
    rows: Rows = []
    failed, elapsed = 0, 0.0
    for pipe in pipes:
        their_rows, their_failed, their_elapsed = pipe.recv()
        rows += their_rows
        failed += their_failed
        elapsed = max(elapsed, their_elapsed)
    for process in children:
        process.join(30)
    return rows, failed, elapsed


def encoder_alone(model: str, device: str, batch: int, seconds: float, texts: list[str]) -> float:
    """Texts/s of the encoder by itself, tokenising and encoding batches of `batch`."""
    import torch

    rate = _encoder_rate(model, device, batch, seconds, texts)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the encoder is gone: leave the device to the server
    return rate


def _encoder_rate(model: str, device: str, batch: int, seconds: float, texts: list[str]) -> float:
    from clipsearch.encoder import load_encoder
    from clipsearch.models import ModelSpec

    batches = [
        [texts[(start + i) % len(texts)] for i in range(batch)]
        for start in range(0, len(texts), batch)
    ]
    rates: list[float] = []
    encoder = load_encoder(ModelSpec(model, PRETRAINED, device=device))

    def run() -> None:
        for warm in batches[:2]:
            encoder.encode_tokens(encoder.tokenize(warm))
        done, started = 0, time.perf_counter()
        for texts_batch in itertools.cycle(batches):
            encoder.encode_tokens(encoder.tokenize(texts_batch))  # vectors back on the host
            done += len(texts_batch)
            if time.perf_counter() - started >= seconds:
                break
        rates.append(done / (time.perf_counter() - started))

    # Loaded here, run in a thread of its own, as the server loads and runs it: on a busy
    # 2-core host torch's intra-op threads ran batches 5x slower in the main thread.
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return rates[0]


def embed_all(target: str, texts: list[str]) -> np.ndarray:
    from clipsearch.client import SearchClient

    with SearchClient(target) as client:
        parts = [client.embed(texts=texts[i : i + 64]).texts for i in range(0, len(texts), 64)]
    return np.concatenate(parts)


def run_mode(
    index: Path, mode: str, args: argparse.Namespace, texts: list[str]
) -> tuple[list[Cell], np.ndarray]:
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(str(index), mode, args.model, args.device, child))
    process.start()
    try:
        target = f"127.0.0.1:{parent.recv()}"
        vectors = embed_all(target, texts)
        cells = []
        for clients in args.levels:
            cell = drive(target, clients, args.seconds, texts, args.client_processes)
            cells.append(replace(cell, mode=mode))
            print(_row(cells[-1]), flush=True)
        return cells, vectors
    finally:
        parent.send("stop")
        process.join(30)


def _row(cell: Cell) -> str:
    return (
        f"{cell.mode:<12} {cell.clients:>7} {cell.qps:>8.1f} {cell.p50_ms:>8.1f} "
        f"{cell.p99_ms:>8.1f} {cell.overhead_p50_ms:>9.3f} {cell.transport_p50_ms:>7.2f} "
        f"{cell.queue_p50_ms:>7.2f} {cell.encode_p50_ms:>7.2f} {cell.search_p50_ms:>7.2f} "
        f"{cell.failed:>6}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clipsearch-bench-serve"))
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per concurrency level")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels, e.g. 1,8,32,256")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--model", default=MODEL, help=f"random weights (default: {MODEL})")
    parser.add_argument(
        "--client-processes",
        type=int,
        help="processes the clients are spread over (default: 1 on CPU, 4 on CUDA)",
    )
    parser.add_argument(
        "--encoder-alone",
        action="store_true",
        help="also measure the encoder by itself at the server's batch size, same run",
    )
    parser.add_argument(
        "--modes", default="batched,per-request", help="which servers to run, in this order"
    )
    args = parser.parse_args(argv)
    from clipsearch.encoder import select_device
    from clipsearch.server.core.config import device_defaults

    args.device = select_device(args.device).type
    args.levels = [int(c) for c in args.clients.split(",")]
    if args.client_processes is None:
        args.client_processes = 4 if args.device == "cuda" else 1
    modes = args.modes.split(",")
    index = prepare(args.workdir, args.vectors, args.model)
    texts = queries()
    batch = device_defaults(args.device).max_batch
    alone = None
    if args.encoder_alone:
        alone = encoder_alone(args.model, args.device, batch, args.seconds, texts)
        print(
            f"encoder alone: {alone:,.1f} texts/s ({args.model} on {args.device}, tokenise + "
            f"encode, batches of {batch}, same run)",
            flush=True,
        )
    print(
        f"{'mode':<12} {'clients':>7} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'overhead':>9} {'grpc':>7} {'queue':>7} {'encode':>7} {'search':>7} "
        f"{'failed':>6}   (p50, ms; failed calls)"
    )
    cells, vectors = {}, {}
    for mode in modes:
        cells[mode], vectors[mode] = run_mode(index, mode, args, texts)
    if alone is not None and "batched" in cells:
        print(f"\nserver text search rate / encoder-alone rate ({alone:,.1f} texts/s):")
        for cell in cells["batched"]:
            print(f"  {cell.clients:>3} clients: {cell.qps / alone:.2f}")
    if "batched" not in cells or "per-request" not in cells:
        return 0
    print("\nbatched / per-request, same run:")
    for slow, fast in zip(cells["per-request"], cells["batched"], strict=True):
        print(
            f"  {fast.clients:>3} clients: QPS x{fast.qps / slow.qps:.2f}, "
            f"p50 x{slow.p50_ms / fast.p50_ms:.2f} faster"
        )
    drift = float(np.abs(vectors["batched"] - vectors["per-request"]).max())
    print(f"embedding parity (batched+trimmed vs full-context single): max |diff| = {drift:.2e}")
    return 0 if drift < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
