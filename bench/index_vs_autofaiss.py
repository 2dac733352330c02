"""clipsearch's index builder against autofaiss, on the same vectors, in the same run.

Run: make bench-index  (or: .venv/bin/python -m bench.index_vs_autofaiss WORKDIR)

1. Writes N CLIP-like unit vectors (bench/synthetic.py) as clipsearch shards, each with
   a paired caption embedding (a text-like vector across the modality gap, as a real
   caption has its image), and as the .npy files autofaiss reads; plus 1,000 fresh
   image-like and 1,000 fresh text-like queries with their exact top-10 neighbours.
2. Builds both indexes at the same memory budget, each in its own process, timing it
   and sampling its peak memory. clipsearch tunes its text settings on the captions and
   builds no caption search (--no-caption-index), so both index the images alone.
   autofaiss 2.18 needs faiss < 1.10, so it runs from its own virtual environment.
3. Loads both indexes in this one process and measures recall@10 and single-query
   single-thread queries/s on both query sets: clipsearch at its build's own defaults
   for each kind, then both builders' search knobs swept; the best setting at or above
   1,000 queries/s per kind and builder closes the report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from bench.embed_pipeline import peak_rss_mb
from bench.synthetic import ClipLikeSpace
from clipsearch.index.manifest import current_version
from clipsearch.index.version import IndexVersion
from clipsearch.types import QueryKind

K = 10
QUERIES = 1000
TIMED = 300
FAST_QPS = 1000  # the bar: the best recall at or above this single-thread rate
KINDS = ("image", "text")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--budget", default="100MB", help="memory budget for both builders")
    parser.add_argument("--autofaiss", default="bench/.venv-autofaiss/bin/autofaiss")
    parser.add_argument(
        "--steps", default="prepare,clipsearch,autofaiss,compare", help="comma-separated"
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    steps = args.steps.split(",")
    if "prepare" in steps:
        prepare(args.workdir, args.n, args.dim)
    if "clipsearch" in steps:
        build_clipsearch(args.workdir, args.budget)
    if "autofaiss" in steps:
        build_autofaiss(args.workdir, args.budget, args.autofaiss)
    if "compare" in steps:
        compare(args.workdir)
    return 0


def prepare(workdir: Path, n: int, dim: int) -> None:
    from bench.synthetic import write_synthetic_shards

    space = ClipLikeSpace(dim, clusters=1024, seed=0)
    started = time.perf_counter()
    vectors = space.images(n, seed=1)
    (workdir / "embeddings").mkdir(exist_ok=True)
    for part, start in enumerate(range(0, n, 250_000)):
        np.save(workdir / "embeddings" / f"part-{part:03d}.npy", vectors[start : start + 250_000])
    captions = space.captions(vectors, seed=2)
    write_synthetic_shards(workdir / "shards", vectors, shard_size=50_000, captions=captions)
    del captions
    truth = {}
    for kind, queries in (
        ("image", space.images(QUERIES, 101)),
        ("text", space.texts(QUERIES, 202)),
    ):
        np.save(workdir / f"queries-{kind}.npy", queries)
        truth[kind] = exact_top_k(queries, vectors)
        np.save(workdir / f"truth-{kind}.npy", truth[kind])
    print(f"prepared {n:,} x {dim} vectors in {time.perf_counter() - started:.0f} s", flush=True)


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, batch: int = 100) -> np.ndarray:
    rows = []
    for start in range(0, len(queries), batch):
        scores = queries[start : start + batch] @ vectors.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        rows.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(rows)


def build_clipsearch(workdir: Path, budget: str) -> None:
    command = [
        sys.executable, "-m", "clipsearch.cli.main", "--log-level", "WARNING", "build",
        str(workdir / "shards"), "--out", str(workdir / "clipsearch-index"),
        "--memory-budget", budget, "--no-caption-index",
    ]  # fmt: skip
    _timed("clipsearch", command, workdir)


def build_autofaiss(workdir: Path, budget: str, executable: str) -> None:
    (workdir / "autofaiss").mkdir(exist_ok=True)
    command = [
        executable, "build_index",
        f"--embeddings={workdir / 'embeddings'}",
        f"--index_path={workdir / 'autofaiss' / 'knn.index'}",
        f"--index_infos_path={workdir / 'autofaiss' / 'infos.json'}",
        f"--max_index_memory_usage={budget}", "--current_memory_available=16G",
        "--metric_type=ip",
    ]  # fmt: skip
    _timed("autofaiss", command, workdir)


def _timed(name: str, command: list[str], workdir: Path) -> None:
    started = time.perf_counter()
    with open(workdir / f"{name}-build.log", "w") as log:
        peak = peak_rss_mb(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    seconds = time.perf_counter() - started
    (workdir / f"{name}-build.json").write_text(json.dumps({"seconds": seconds, "peak_mb": peak}))
    print(f"{name}: built in {seconds:.0f} s, peak memory {peak:.0f} MB", flush=True)


def compare(workdir: Path) -> None:
    faiss.omp_set_num_threads(1)
    queries = {k: np.load(workdir / f"queries-{k}.npy") for k in KINDS}
    truth = {k: np.load(workdir / f"truth-{k}.npy") for k in KINDS}
    path = current_version(workdir / "clipsearch-index")
    assert path is not None
    ours = IndexVersion(path)
    theirs = faiss.read_index(str(workdir / "autofaiss" / "knn.index"))
    n = ours.manifest.count
    seconds = {}
    for name in ("clipsearch", "autofaiss"):
        info = json.loads((workdir / f"{name}-build.json").read_text())
        seconds[name] = info["seconds"]
        print(
            f"{name:>10}: build {info['seconds']:.0f} s, build peak memory {info['peak_mb']:.0f} MB"
        )
    print(f"build time autofaiss / clipsearch: {seconds['autofaiss'] / seconds['clipsearch']:.2f}x")
    ram_ours = (path / "index.faiss").stat().st_size / n
    ram_theirs = (workdir / "autofaiss" / "knn.index").stat().st_size / n
    print(
        f"bytes per vector in RAM: clipsearch {ram_ours:.1f} (+ float16 vectors on disk "
        f"for re-ranking), autofaiss {ram_theirs:.1f}"
    )
    print(f"clipsearch index: {ours.manifest.factory}; autofaiss: {_factory(workdir)}")

    def ours_at(nprobe: int, candidates: int) -> Search:
        return lambda q: ours.search(q, K, nprobe=nprobe, candidates=candidates).rows

    print(f"\nclipsearch at its build's defaults (target recall@10 {ours.manifest.target_recall})")
    for kind in KINDS:
        chosen = ours.manifest.defaults(QueryKind(kind))
        recall, qps = _sweep(
            ours_at(chosen.default_nprobe, chosen.rerank_candidates), queries[kind], truth[kind]
        )
        knob = f"nprobe={chosen.default_nprobe},rerank={chosen.rerank_candidates}"
        print(f"  {kind:<5} ({chosen.source.value}) {knob:<24} {recall:9.3f} {qps:11.0f}")

    best: dict[tuple[str, str], tuple[float, float, str]] = {}
    for kind in KINDS:
        print(f"\n{kind}-like queries: knob, recall@10, queries/s (one query, one thread)")
        for candidates in (100, 200, 400, 800):
            for nprobe in (4, 8, 16, 32, 48, 64):
                knob = f"nprobe={nprobe},rerank={candidates}"
                recall, qps = _sweep(ours_at(nprobe, candidates), queries[kind], truth[kind])
                _keep_best(best, ("clipsearch", kind), recall, qps, knob)
                print(f"  clipsearch  {knob:<24} {recall:9.3f} {qps:11.0f}", flush=True)
        space = faiss.ParameterSpace()
        hnsw = "HNSW" in _factory(workdir)
        # Small collections get an index without lists from autofaiss: nothing to sweep.
        probes = (8, 16, 32, 64, 128, 256, 512) if "IVF" in _factory(workdir) else (0,)
        for nprobe in probes:
            knob = f"nprobe={nprobe}" + (
                f",quantizer_efSearch={max(2 * nprobe, 32)}" if hnsw else ""
            )
            if nprobe:
                space.set_index_parameters(theirs, knob)
            recall, qps = _sweep(lambda q: theirs.search(q, K)[1], queries[kind], truth[kind])
            _keep_best(best, ("autofaiss", kind), recall, qps, knob)
            print(f"  autofaiss   {knob:<24} {recall:9.3f} {qps:11.0f}", flush=True)

    print(f"\nbest recall@10 at >= {FAST_QPS:,} queries/s (one query, one thread)")
    for (name, kind), (recall, qps, knob) in sorted(best.items()):
        print(f"  {name:<10} {kind:<5} {knob:<40} {recall:9.3f} {qps:11.0f}")


Search = Callable[[np.ndarray], np.ndarray]


def _keep_best(
    best: dict[tuple[str, str], tuple[float, float, str]],
    key: tuple[str, str], recall: float, qps: float, knob: str,
) -> None:  # fmt: skip
    if qps >= FAST_QPS and recall > best.get(key, (-1.0, 0.0, ""))[0]:
        best[key] = (recall, qps, knob)


def _sweep(search: Search, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    found = search(queries)
    recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
    started = time.perf_counter()
    for query in queries[:TIMED]:
        search(query[None, :])
    return float(recall), TIMED / (time.perf_counter() - started)


def _factory(workdir: Path) -> str:
    infos = workdir / "autofaiss" / "infos.json"
    return json.loads(infos.read_text()).get("index_key", "?") if infos.exists() else "?"


if __name__ == "__main__":
    sys.exit(main())
