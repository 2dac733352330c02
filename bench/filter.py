"""Filtered search: clipsearch's planned search against unfiltered search and against
post-filtering, on the same index and queries, in one run.

Run: make bench-filter  (or: .venv/bin/python -m bench.filter [--vectors 1000000]
[--budget 100MB] [--workdir DIR])

1. Writes N CLIP-like vectors (bench/synthetic.py) as shards whose metadata holds `n`,
   the row's number, and `h`, a random permutation of 0..N-1; builds them with
   `clipsearch build --memory-budget BUDGET`. Both are kept in the workdir and reused.
   `metadata.n < s*N` lets through one contiguous block of rows ("block"), `metadata.h <
   s*N` as many rows spread uniformly over the collection ("spread"): exact selectivities
   either way. Our own shards, because `write_synthetic_shards` writes only `n`, and an
   `any_of` over n values is capped at 1,024 values and would make the filter itself the
   cost being measured.
2. Exact top-10 neighbours of image-like and text-like queries, unfiltered and per filter,
   by brute force over the index's float16 vectors (cached in the workdir).
3. Per selectivity, one query at a time on one thread (faiss's and numpy's: `make
   bench-filter` sets OPENBLAS_NUM_THREADS=1), interleaved query by query so that a load
   change on the machine hits every way alike:
   (a) unfiltered search at the index's default settings;
   (b) clipsearch's filtered search as the server runs it: searching.planned (the mask
       and its RowSet from the FilterMasks cache, plan_filtered), searching.search (with the
       server's depth, top_k + 1). Its queries/s are with the cache warm, as the server
       serves a repeated filter; "1st ms" is the first query's latency with the mask
       evaluated (an empty cache), "plan ms" the server's planning of each query;
   (c) post-filtering as clip-retrieval does it: the index searched unfiltered at its
       default settings for k' = 10*k candidates, the rows the filter refuses dropped.
   Recall@10 is against the exact neighbours; "short" counts queries given fewer than
   min(k, matching rows) hits; "ratio" is queries/s over the unfiltered queries/s.

--sweep instead measures, per selectivity, the exact scan of the matching rows and the
index with an ID selector at growing nprobe: the figures the constants of
clipsearch/server/core/filter_plan.py are calibrated from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from bench.synthetic import ClipLikeSpace, format_for
from clipsearch.collection.ids import item_id
from clipsearch.collection.manifest import FileKind, Manifest, write_manifest
from clipsearch.collection.shards import embeddings_schema, vector_column, write_shard_file
from clipsearch.filters import Filter
from clipsearch.filters import field as metadata_field
from clipsearch.index.fields import FieldSchema
from clipsearch.index.manifest import current_version
from clipsearch.index.version import IndexVersion, RowSet, SearchResult
from clipsearch.indexer.build.plan import parse_size
from clipsearch.server.core.filter_plan import plan_filtered
from clipsearch.server.core.filtering import FilterMasks
from clipsearch.server.core.searching import Planned, planned, search
from clipsearch.types import SearchOptions, SearchQuery, VectorQuery
from clipsearch.version import VERSION

K = 10
# clip-retrieval's back end searches for `num_result_ids` neighbours and returns those its
# filters (safety, violence, duplicates) keep; its web front asks for 3,000 to show 40.
# Post-filtering here gets ten times the hits shown.
POST_FILTER_FETCH = 10 * K
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001, 0.0001)
LAYOUTS = {"block": "metadata.n", "spread": "metadata.h"}
SHARD_ROWS = 50_000
TRUTH_CHUNK = 32_768  # rows scored at once for the exact neighbours
# The sweep scans exactly up to this many rows, and raises nprobe until every query
# kind reaches the recall or a search gets slower than SWEEP_MIN_QPS.
SWEEP_EXACT_MAX_ROWS = 16_384
SWEEP_STOP_RECALL = 0.98
SWEEP_MIN_QPS = 50


@dataclass(frozen=True)
class BenchConfig:
    vectors: int
    dim: int
    budget: int
    workdir: Path
    queries: int  # per kind (image-like, text-like)
    selectivities: tuple[float, ...]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--budget", default="100MB", help="the build's --memory-budget")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clipsearch-bench-filter"))
    parser.add_argument("--queries", type=int, default=300, help="per kind (image, text)")
    parser.add_argument(
        "--selectivities", default=",".join(f"{s:g}" for s in SELECTIVITIES),
        help="fractions of the rows filters let through, comma-separated",
    )  # fmt: skip
    parser.add_argument("--sweep", action="store_true", help="calibration sweep instead")
    args = parser.parse_args(argv)
    config = BenchConfig(
        args.vectors, args.dim, parse_size(args.budget), args.workdir, args.queries,
        tuple(float(s) for s in args.selectivities.split(",")),
    )  # fmt: skip
    version = prepare(config)
    faiss.omp_set_num_threads(1)
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "unset: numpy's BLAS may take every core")
    print(f"load average {os.getloadavg()[0]:.2f}; OPENBLAS_NUM_THREADS={blas}", flush=True)
    bench = Bench.load(config, version)
    if args.sweep:
        bench.sweep()
    else:
        bench.compare()
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


# --- the collection and its index -------------------------------------------------------


def prepare(config: BenchConfig) -> IndexVersion:
    """The built index, from the workdir when it was built with these settings."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    shards, out = config.workdir / "shards", config.workdir / "index"
    stamp = {"vectors": config.vectors, "dim": config.dim, "budget": config.budget}
    stamp_file = config.workdir / "built.json"
    path = current_version(out)
    if path is not None and stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        print(f"reusing {path}", flush=True)
        return IndexVersion(path)
    for folder in (shards, out):
        shutil.rmtree(folder, ignore_errors=True)
    for truth in config.workdir.glob("truth-*.npz"):  # the exact neighbours of the old one
        truth.unlink()
    started = time.perf_counter()
    write_shards(shards, config.vectors, config.dim)
    print(f"wrote {config.vectors:,} x {config.dim} vectors in "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    started = time.perf_counter()
    # The build takes every core (numpy's BLAS threads too); only the searches are timed.
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    command = [
        sys.executable, "-m", "clipsearch.cli.main", "--log-level", "WARNING", "build",
        str(shards), "--out", str(out), "--memory-budget", str(config.budget),
    ]  # fmt: skip
    subprocess.run(command, check=True, env=env)
    path = current_version(out)
    assert path is not None
    version = IndexVersion(path)
    print(f"built {version.manifest.factory} in {time.perf_counter() - started:.0f} s", flush=True)
    stamp_file.write_text(json.dumps(stamp))
    return version


def write_shards(folder: Path, n: int, dim: int) -> None:
    """Shards as bench/synthetic.py writes them, with metadata {"n": the row, "h": its
    place in a random permutation of the rows}."""
    space = ClipLikeSpace(dim, clusters=1024, seed=0)
    spread = np.random.default_rng(7).permutation(n)
    fmt = format_for(dim)
    manifest = Manifest(embedding=fmt, clipsearch_version=VERSION)
    folder.mkdir(parents=True)
    for start in range(0, n, SHARD_ROWS):
        rows = range(start, min(n, start + SHARD_ROWS))
        vectors = space.images(len(rows), seed=10_000 + start // SHARD_ROWS)
        uris = [f"item-{i}" for i in rows]
        table = pa.table(
            {
                "id": [item_id(u) for u in uris],
                "uri": uris,
                "embedding": vector_column(vectors, "float16"),
                "width": [1] * len(rows),
                "height": [1] * len(rows),
                "content_hash": [""] * len(rows),
                "stamp": ["s"] * len(rows),
                "caption": [f"caption of {u}" for u in uris],
                "metadata": [f'{{"n": {i}, "h": {spread[i]}}}' for i in rows],
            },
            schema=embeddings_schema(fmt),
        )
        entry = write_shard_file(folder, FileKind.EMBEDDINGS, manifest.next_seq, table, fmt, 1)
        manifest = manifest.with_file(entry)
    write_manifest(folder, manifest)


# --- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    layout: str
    matches: int

    @property
    def filter(self) -> Filter:
        return metadata_field(LAYOUTS[self.layout]) < float(self.matches)

    @property
    def key(self) -> str:
        return f"{self.layout}-{self.matches}"


@dataclass
class Tally:
    """Recall@10, time and shortfalls of one way of searching over a query set."""

    recalls: list[float] = field(default_factory=list)
    seconds: float = 0.0
    short: int = 0

    def measure(self, work: Callable[[], np.ndarray], truth: np.ndarray, wanted: int) -> None:
        """Run one search, timed, and score its rows against the exact ones."""
        started = time.perf_counter()
        rows = work()
        self.seconds += time.perf_counter() - started
        found = rows[rows >= 0][:K]
        self.recalls.append(len(set(found.tolist()) & set(truth.tolist())) / max(wanted, 1))
        self.short += len(found) < wanted

    @property
    def recall(self) -> float:
        return float(np.mean(self.recalls))

    @property
    def qps(self) -> float:
        return len(self.recalls) / self.seconds


@dataclass
class Bench:
    config: BenchConfig
    version: IndexVersion
    queries: dict[str, np.ndarray]
    cases: list[Case]
    masks: dict[str, np.ndarray]  # by case key, evaluated once for the exact neighbours
    truth: dict[str, np.ndarray]  # by "kind/case key" ("kind/all": unfiltered)

    @staticmethod
    def load(config: BenchConfig, version: IndexVersion) -> Bench:
        space = ClipLikeSpace(config.dim, clusters=1024, seed=0)
        queries = {"image": space.images(config.queries, 101),
                   "text": space.texts(config.queries, 202)}  # fmt: skip
        live = version.manifest.count
        cases = [
            Case(layout, max(1, round(s * live)))
            for s in config.selectivities
            for layout in LAYOUTS
        ]
        started = time.perf_counter()
        fields, schema, once = version.fields, FieldSchema.of(version.manifest), FilterMasks()
        masks = {c.key: once.mask(version.name, c.filter, fields, schema) for c in cases}
        print(f"fields table read and {len(cases)} masks evaluated in "
              f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        truth = _exact_neighbours(config, version, queries, masks)
        _warm(version)
        return Bench(config, version, queries, cases, masks, truth)

    def _planned(self, case: Case, masks: FilterMasks, vector: np.ndarray) -> Planned:
        """The server's own planning of a filtered query (a vector query)."""
        query = SearchQuery(VectorQuery(vector), SearchOptions(top_k=K, filter=case.filter))
        return planned(query, self.version, 0, "bench", masks)

    def _unfiltered(self, vector: np.ndarray) -> np.ndarray:
        return _rows(Planned(SearchQuery(VectorQuery(vector)), self.version, 0, "bench"), vector)

    def _filtered(self, case: Case, masks: FilterMasks, vector: np.ndarray) -> np.ndarray:
        return _rows(self._planned(case, masks, vector), vector)

    def _post_filtered(self, mask: np.ndarray, vector: np.ndarray) -> np.ndarray:
        rows: np.ndarray = self.version.search(vector[None], POST_FILTER_FETCH).rows[0]
        rows = rows[rows >= 0]
        kept: np.ndarray = rows[mask[rows]][:K]
        return kept

    def compare(self) -> None:
        m = self.version.manifest
        print(f"\n{m.count:,} vectors, {m.factory}, default nprobe {m.default_nprobe} of "
              f"{m.nlist} lists, {m.rerank_candidates} re-ranked; {self.config.queries} "
              f"image-like and {self.config.queries} text-like queries; k={K}, one query "
              f"at a time, one thread; post-filter k'={POST_FILTER_FETCH}")  # fmt: skip
        for matches in sorted({c.matches for c in self.cases}, reverse=True):
            self._compare_one([c for c in self.cases if c.matches == matches])

    def _compare_one(self, cases: list[Case]) -> None:
        matches, index = cases[0].matches, self.version.images
        plan = plan_filtered(matches, index.count, index.nlist, index.default_nprobe, None)
        how = "exact scan" if plan.exact else f"index, nprobe {plan.nprobe}"
        print(f"\nselectivity {matches / index.count:.2%}: {matches:,} rows match; "
              f"plan: {how}")  # fmt: skip
        print(f"{'':15}{'unfiltered':>14} | {'clipsearch filtered, as served':<44}| "
              "post-filter")  # fmt: skip
        print(f"{'rows':7}{'queries':8}{'recall':>6}{'q/s':>7} |{'recall':>7}{'q/s':>7}"
              f"{'ratio':>6}{'short':>6}{'1st ms':>7}{'plan ms':>8} |"
              f"{'recall':>7}{'q/s':>6}{'short':>6}")  # fmt: skip
        for case in cases:
            mask, wanted = self.masks[case.key], min(K, case.matches)
            masks = FilterMasks()  # the server's cache, empty: the first query evaluates
            vector = self.queries["image"][0]
            started = time.perf_counter()
            self._filtered(case, masks, vector)
            first_ms = (time.perf_counter() - started) * 1000
            plan_ms = self._plan_ms(case, masks, vector)
            for kind, queries in self.queries.items():
                plain, ours, post = Tally(), Tally(), Tally()
                for i, vector in enumerate(queries):
                    every, exact = self.truth[f"{kind}/all"][i], self.truth[f"{kind}/{case.key}"][i]
                    plain.measure(partial(self._unfiltered, vector), every, K)
                    ours.measure(partial(self._filtered, case, masks, vector), exact, wanted)
                    post.measure(partial(self._post_filtered, mask, vector), exact, wanted)
                print(f"{case.layout:7}{kind:8}{plain.recall:6.3f}{plain.qps:7.0f} |"
                      f"{ours.recall:7.3f}{ours.qps:7.0f}{ours.qps / plain.qps:6.2f}"
                      f"{ours.short:6}{first_ms:7.1f}{plan_ms:8.2f} |"
                      f"{post.recall:7.3f}{post.qps:6.0f}{post.short:6}", flush=True)  # fmt: skip

    def _plan_ms(self, case: Case, masks: FilterMasks, vector: np.ndarray, reps: int = 50) -> float:
        """The server's per-query planning with the cache warm."""
        started = time.perf_counter()
        for _ in range(reps):
            self._planned(case, masks, vector)
        return (time.perf_counter() - started) * 1000 / reps

    def sweep(self) -> None:
        """Per selectivity (spread rows): the exact scan of the matching rows, then the
        index alone with an ID selector at nprobe = default * 2^i ("short": queries it
        found fewer than k rows for, which searching.search completes with the scan)."""
        m = self.version.manifest
        print(f"\n{m.count:,} vectors, {m.factory}, default nprobe {m.default_nprobe} of "
              f"{m.nlist}; recall@10 at queries/s (short), image-like / text-like")  # fmt: skip
        unfiltered = {kind: Tally() for kind in self.queries}  # the reference
        for kind, queries in self.queries.items():
            for i, vector in enumerate(queries):
                unfiltered[kind].measure(
                    partial(self._unfiltered, vector), self.truth[f"{kind}/all"][i], K
                )
        print("unfiltered:     " + self._pair(unfiltered))
        for case in self.cases:
            if case.layout != "spread":
                continue
            print(f"\n{case.matches:,} rows ({case.matches / m.count:.2%})", flush=True)
            allowed = RowSet.of(self.masks[case.key])
            if case.matches <= SWEEP_EXACT_MAX_ROWS:
                scan = self._tallies(case, partial(self.version.search_rows, allowed=allowed))
                print("  exact scan:   " + self._pair(scan), flush=True)
            nprobe = m.default_nprobe
            while True:
                index = partial(self.version.search, nprobe=nprobe, allowed=allowed)
                tallies = self._tallies(case, index)
                print(f"  nprobe {nprobe:5}: " + self._pair(tallies), flush=True)
                done = min(t.recall for t in tallies.values()) >= SWEEP_STOP_RECALL
                too_slow = min(t.qps for t in tallies.values()) < SWEEP_MIN_QPS
                if done or too_slow or nprobe >= m.nlist:
                    break
                nprobe = min(m.nlist, nprobe * 2)

    def _tallies(self, case: Case, searcher: Callable[..., SearchResult]) -> dict[str, Tally]:
        """`searcher(queries, k)` over every query, as deep as the server searches."""
        tallies = {kind: Tally() for kind in self.queries}
        wanted = min(K, case.matches)
        for kind, queries in self.queries.items():
            for i, vector in enumerate(queries):
                truth = self.truth[f"{kind}/{case.key}"][i]
                tallies[kind].measure(partial(_first_rows, searcher, vector), truth, wanted)
        return tallies

    @staticmethod
    def _pair(tallies: dict[str, Tally]) -> str:
        return " / ".join(
            f"{t.recall:.3f} at {t.qps:5.0f} q/s ({t.short:3})" for t in tallies.values()
        )


def _warm(version: IndexVersion) -> None:
    """Read the memory-mapped vectors once, as a serving server has: re-ranking reads
    them, and the first filter measured would otherwise pay the disk for every other."""
    started = time.perf_counter()
    vectors = version.vectors
    for start in range(0, len(vectors), 1 << 16):
        np.asarray(vectors[start : start + (1 << 16)]).max()
    print(f"vectors read into the page cache in {time.perf_counter() - started:.1f} s")


def _rows(planned: Planned, vector: np.ndarray) -> np.ndarray:
    """searching.search as the server calls it: top_k + 1 deep, to tell whether more exist."""
    rows: np.ndarray = search(planned, vector[None], planned.fetch()).rows[0]
    return rows


def _first_rows(searcher: Callable[..., SearchResult], vector: np.ndarray) -> np.ndarray:
    rows: np.ndarray = searcher(vector[None], K + 1).rows[0]
    return rows


# --- exact neighbours -------------------------------------------------------------------


def _exact_neighbours(
    config: BenchConfig,
    version: IndexVersion,
    queries: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Top-k rows by exact inner product with the stored float16 vectors, unfiltered
    ("kind/all") and among each mask's rows ("kind/key"); cached per version and
    query count."""
    cache = config.workdir / f"truth-{version.name}-{config.queries}.npz"
    wanted = [f"{kind}/{key}" for kind in queries for key in ("all", *masks)]
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as stored:
            known = dict(zip((str(n) for n in stored["names"]), stored["rows"], strict=True))
        if all(name in known for name in wanted):
            return {name: known[name] for name in wanted}
    started = time.perf_counter()
    every = np.concatenate(list(queries.values()))
    count = len(every)
    keys = ("all", *masks)
    best = {key: np.full((count, K), -np.inf, dtype=np.float32) for key in keys}
    rows = {key: np.full((count, K), -1, dtype=np.int64) for key in keys}
    total = version.manifest.rows
    for start in range(0, total, TRUTH_CHUNK):
        stop = min(total, start + TRUTH_CHUNK)
        scores = every @ np.asarray(version.vectors[start:stop], dtype=np.float32).T
        for key in keys:
            columns = (
                np.arange(stop - start) if key == "all" else np.flatnonzero(masks[key][start:stop])
            )
            if len(columns) == 0:
                continue
            both = np.concatenate([best[key], scores[:, columns]], axis=1)
            ids = np.concatenate(
                [rows[key], np.broadcast_to(columns + start, (count, len(columns)))], axis=1
            )
            top = np.argpartition(-both, K - 1, axis=1)[:, :K]
            best[key] = np.take_along_axis(both, top, axis=1)
            rows[key] = np.take_along_axis(ids, top, axis=1)
    out: dict[str, np.ndarray] = {}
    for key in keys:
        order = np.argsort(-best[key], axis=1)
        ranked = np.take_along_axis(rows[key], order, axis=1)
        offset = 0
        for kind, q in queries.items():
            out[f"{kind}/{key}"] = ranked[offset : offset + len(q)]
            offset += len(q)
    kept = known | out  # other runs' selectivities too
    np.savez(cache, names=np.array(list(kept)), rows=np.stack(list(kept.values())))
    print(f"exact neighbours of {count} queries under {len(keys)} filters in "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return out


if __name__ == "__main__":
    sys.exit(main())
