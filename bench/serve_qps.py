"""Text-query throughput of the gRPC server: dynamic batching against per-request encoding.

    make bench-serve        (python -m bench.serve_qps [--vectors 100000] [--seconds 8])

Builds an index of synthetic vectors of ViT-B-32's dimension (embedding 100k images on
2 cores takes hours), then serves it twice, one after the other, in a child process:

  per-request   each query encoded alone at the full 77-token context (no batching)
  batched       dynamic batching, text batches cut to their longest real sequence

and drives each with 1, 8 and 32 concurrent clients sending short text queries. Prints
QPS, client p50/p99 latency, the server's own overhead per request (its total time
minus queueing, encoding and searching) and the ratio batched / per-request at each
concurrency, all measured in the same run. The model is ViT-B-32 with random weights.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

MODEL, PRETRAINED, DIM = "ViT-B-32", "none", 512
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


def queries() -> list[str]:
    return [
        f"a photo of a {a} {n} {p}".strip()
        for a, n, p in itertools.product(ADJECTIVES, NOUNS, PLACES)
    ]


def prepare(workdir: Path, n: int) -> Path:
    """An index of `n` synthetic vectors standing for ViT-B-32 image embeddings."""
    from bench.synthetic import ClipLikeSpace, write_synthetic_shards
    from clipsearch.collection.manifest import EmbeddingFormat, VectorDtype
    from clipsearch.encoder import load_encoder
    from clipsearch.index.manifest import current_version
    from clipsearch.indexer import BuildConfig, run_build
    from clipsearch.models import ModelSpec

    index = workdir / "index"
    if current_version(index) is not None:
        return index
    info = load_encoder(ModelSpec(MODEL, PRETRAINED, device="cpu")).info
    fmt = EmbeddingFormat(MODEL, PRETRAINED, DIM, info.preprocess, VectorDtype.FLOAT16, False)
    print(f"writing {n:,} synthetic {DIM}-d vectors and building the index...", flush=True)
    vectors = ClipLikeSpace(DIM, 256, seed=0).images(n, seed=0)
    write_synthetic_shards(workdir / "shards", vectors, shard_size=50_000, fmt=fmt)
    run_build(BuildConfig(workdir / "shards", index, eval_queries=200))
    return index


def serve(index: str, mode: str, conn: Connection) -> None:
    """Child process: serve `index` in `mode` until told to stop."""
    from clipsearch.encoder import load_encoder
    from clipsearch.models import ModelSpec
    from clipsearch.server.app import start
    from clipsearch.server.config import NamedIndex, ServerConfig
    from clipsearch.server.core.config import BatchingConfig

    encoder = load_encoder(ModelSpec(MODEL, PRETRAINED, device="cpu"))
    batching = BatchingConfig()
    if mode == "per-request":
        encoder.trim_text = False
        batching = BatchingConfig(max_batch=1, max_wait_ms=0)
    config = ServerConfig(NamedIndex.of(Path(index)), port=0, metrics_port=None, batching=batching)
    running = start(config, encoder)
    conn.send(running.port)
    conn.recv()
    running.stop(1)


def drive(target: str, clients: int, seconds: float, texts: list[str]) -> Cell:
    from clipsearch.client import SearchClient, TextQuery

    rows: list[tuple[float, ...]] = []
    lock = threading.Lock()
    start_at = time.monotonic() + 0.5
    end_at = start_at + seconds

    def client_loop(offset: int) -> None:
        mine: list[tuple[float, ...]] = []
        with SearchClient(target, timeout_s=60) as client:
            client.search(TextQuery("warm up"), top_k=10)
            time.sleep(max(0.0, start_at - time.monotonic()))
            for n in itertools.count(offset):
                sent = time.perf_counter()
                result = client.search(TextQuery(texts[n % len(texts)]), top_k=10)
                took = (time.perf_counter() - sent) * 1000
                t = result.timing
                inner = t.total_ms - t.queue_ms - t.encode_ms - t.search_ms
                mine.append((took, inner, took - t.total_ms, t.queue_ms, t.encode_ms, t.search_ms))
                if time.monotonic() >= end_at:
                    break
        with lock:
            rows.extend(mine)

    threads = [threading.Thread(target=client_loop, args=(i * 7,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start_at
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
    )


def embed_all(target: str, texts: list[str]) -> np.ndarray:
    from clipsearch.client import SearchClient

    with SearchClient(target) as client:
        parts = [client.embed(texts=texts[i : i + 64]).texts for i in range(0, len(texts), 64)]
    return np.concatenate(parts)


def run_mode(
    index: Path, mode: str, levels: list[int], seconds: float, texts: list[str]
) -> tuple[list[Cell], np.ndarray]:
    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(str(index), mode, child))
    process.start()
    try:
        target = f"127.0.0.1:{parent.recv()}"
        vectors = embed_all(target, texts)
        cells = []
        for clients in levels:
            cell = drive(target, clients, seconds, texts)
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
        f"{cell.queue_p50_ms:>7.2f} {cell.encode_p50_ms:>7.2f} {cell.search_p50_ms:>7.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clipsearch-bench-serve"))
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per concurrency level")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    index = prepare(args.workdir, args.vectors)
    texts = queries()
    print(
        f"{'mode':<12} {'clients':>7} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'overhead':>9} {'grpc':>7} {'queue':>7} {'encode':>7} {'search':>7}   (p50, ms)"
    )
    per_request, reference = run_mode(index, "per-request", levels, args.seconds, texts)
    batched, vectors = run_mode(index, "batched", levels, args.seconds, texts)
    print("\nbatched / per-request, same run:")
    for slow, fast in zip(per_request, batched, strict=True):
        print(
            f"  {fast.clients:>2} clients: QPS x{fast.qps / slow.qps:.2f}, "
            f"p50 x{slow.p50_ms / fast.p50_ms:.2f} faster"
        )
    drift = float(np.abs(vectors - reference).max())
    print(f"embedding parity (batched+trimmed vs full-context single): max |diff| = {drift:.2e}")
    return 0 if drift < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
