"""A sustained load run against a real server, with index swaps every few seconds.

    make soak               (python -m bench.soak [--minutes 3] [--clients 8] [--swap-every 3])

Embeds 300 textile images with the tiny model, builds two index versions, serves them
from a child process on loopback, and for the given time: clients send a mix of text,
image, vector, item, batch, embed and classify requests while the current version is
switched every few seconds (each switch is a real reload from disk). Prints requests by
outcome and the server's memory (PSS) over time. Passes (exit 0) with zero failed
requests and memory in the last minute within 10% of the first.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

TINY = "clipsearch-tiny"


def prepare(workdir: Path) -> tuple[Path, list[Path]]:
    import conformal_clip_data

    from clipsearch.indexer import BuildConfig, EmbedConfig, SourceSpec, run_build, run_embed
    from clipsearch.models import ModelSpec

    images = workdir / "images"
    images.mkdir(parents=True)
    root = conformal_clip_data.textile_simulated_root()
    for n, path in enumerate(sorted(root.rglob("*.jpg"))[::6][:300]):
        shutil.copy(path, images / f"{n:04d}-{path.name}")
    model = ModelSpec(TINY, "none", device="cpu")
    run_embed(EmbedConfig(SourceSpec(str(images)), workdir / "shards", model, quiet=True))
    for _ in range(2):
        run_build(BuildConfig(workdir / "shards", workdir / "index", eval_queries=50))
    return workdir / "index", sorted(images.iterdir())


def serve(index: str, conn: Connection) -> None:
    from clipsearch.models import ModelSpec
    from clipsearch.server.app import start
    from clipsearch.server.config import NamedIndex, ServerConfig

    config = ServerConfig(
        NamedIndex.of(Path(index)), port=0, metrics_port=None, reload_interval_s=0.2,
        model=ModelSpec(TINY, "none", device="cpu"),
    )  # fmt: skip
    running = start(config)
    conn.send(running.port)
    conn.recv()
    running.stop(5)


def pss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return float("nan")
    kb = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return kb / 1024


def client_loop(
    target: str, images: list[Path], stop: threading.Event, outcomes: Counter[str]
) -> None:
    from clipsearch.client import (
        ImageQuery,
        ItemQuery,
        RpcError,
        SearchClient,
        SearchQuery,
        TextQuery,
        VectorQuery,
    )

    rng = random.Random(threading.get_ident())
    blobs = [p.read_bytes() for p in images[:40]]
    with SearchClient(target, timeout_s=30) as client:
        known = [h.id for h in client.search(TextQuery("textile"), top_k=50).hits]
        while not stop.is_set():
            kind = rng.choice(["text", "image", "vector", "item", "batch", "embed", "classify"])
            try:
                if kind == "text":
                    client.search(TextQuery(f"fabric pattern {rng.random():.3f}"))
                elif kind == "image":
                    client.search(ImageQuery(rng.choice(blobs)), top_k=5)
                elif kind == "vector":
                    vector = np.random.default_rng(rng.randrange(10**9)).normal(size=64)
                    client.search(VectorQuery(vector.astype(np.float32)))
                elif kind == "item":
                    client.search(ItemQuery(rng.choice(known)))
                elif kind == "batch":
                    client.batch_search([SearchQuery(ImageQuery(b)) for b in rng.sample(blobs, 4)])
                elif kind == "embed":
                    client.embed(texts=["a", "b"], images=[rng.choice(blobs)])
                else:
                    client.classify(rng.choice(blobs), ["plain", "local defect", "global defect"])
                outcomes[f"{kind} ok"] += 1
            except RpcError as err:
                outcomes[f"{kind} {err.code.name}"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--swap-every", type=float, default=3.0, help="seconds between swaps")
    args = parser.parse_args(argv)
    from clipsearch.index.publish import list_versions, switch_current

    workdir = Path(tempfile.mkdtemp(prefix="clipsearch-soak-"))
    try:
        index, images = prepare(workdir)
        versions = list_versions(index)
        context = mp.get_context("spawn")
        parent, child = context.Pipe()
        server = context.Process(target=serve, args=(str(index), child))
        server.start()
        target = f"127.0.0.1:{parent.recv()}"
        stop, outcomes = threading.Event(), Counter[str]()
        clients = [
            threading.Thread(target=client_loop, args=(target, images, stop, outcomes))
            for _ in range(args.clients)
        ]
        for thread in clients:
            thread.start()
        memory: list[tuple[float, float]] = []
        started = time.monotonic()
        end = started + args.minutes * 60
        swaps, next_swap = 0, started + args.swap_every
        while (now := time.monotonic()) < end:
            if now >= next_swap:
                swaps += 1
                switch_current(index, versions[swaps % len(versions)])
                next_swap += args.swap_every
            memory.append((now - started, pss_mb(server.pid or 0)))
            time.sleep(1.0)
        stop.set()
        for thread in clients:
            thread.join()
        parent.send("stop")
        server.join(30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(outcomes, memory, swaps, args.minutes)


def report(
    outcomes: Counter[str], memory: list[tuple[float, float]], swaps: int, minutes: float
) -> int:
    total = sum(outcomes.values())
    failed = sum(n for key, n in outcomes.items() if not key.endswith(" ok"))
    print(f"\n{total:,} requests in {minutes:g} min ({total / (minutes * 60):.0f}/s), "
          f"{swaps} index swaps, {failed} failed")  # fmt: skip
    for key, n in sorted(outcomes.items()):
        print(f"  {key:<22} {n:>8,}")
    window = max(1, min(60, len(memory) // 3))
    first = float(np.median([mb for _, mb in memory[:window]]))
    last = float(np.median([mb for _, mb in memory[-window:]]))
    by_minute = [
        float(np.median([mb for t, mb in memory if m * 60 <= t < (m + 1) * 60]))
        for m in range(int(max(t for t, _ in memory) // 60) + 1)
    ]
    print("server PSS by minute (median MB): " + ", ".join(f"{mb:.0f}" for mb in by_minute))
    peak = max(mb for _, mb in memory)
    print(f"server PSS: first {window} s median {first:.0f} MB, last {window} s {last:.0f} MB "
          f"({(last / first - 1) * 100:+.1f}%); peak {peak:.0f} MB")  # fmt: skip
    return 0 if failed == 0 and last <= first * 1.10 else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
