"""`clipsearch build`: Parquet shards to a measured, published index version."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.cli.args import add_engine_arguments
from clipsearch.index.manifest import CurvePoint, IndexManifest, MeasuredDefaults
from clipsearch.indexer.build.job import BuildConfig, run_build
from clipsearch.indexer.build.plan import parse_size
from clipsearch.indexer.build.plot import plot_curve
from clipsearch.indexer.engine import Engine
from clipsearch.types import QueryKind, QuerySource


def register(build: argparse.ArgumentParser) -> None:
    defaults = BuildConfig(Path(), Path())
    build.description = (
        "Build a FAISS index over the current rows of SHARDS_DIR, measure its "
        "recall against exact search, and publish it atomically as a new version under --out "
        "(a server watching --out switches to it). A failed or interrupted build leaves the "
        "current version untouched."
    )
    build.add_argument("shards", type=Path, help="the folder `clipsearch embed` wrote")
    build.add_argument("--out", type=Path, required=True, help="the index folder")
    build.add_argument(
        "--memory-budget",
        type=parse_size,
        default=defaults.memory_budget,
        help="RAM the index may take, e.g. 512M or 4G (default: 4G); the float16 vectors used "
        "for re-ranking are memory-mapped from disk and not counted",
    )
    build.add_argument(
        "--index-factory", help="a FAISS factory string instead of the planned index"
    )
    build.add_argument(
        "--target-recall",
        type=float,
        default=defaults.target_recall,
        help="the recall@10 the default search setting must reach "
        f"(default: {defaults.target_recall:g})",
    )
    build.add_argument(
        "--add",
        action="store_true",
        help="extend the current version with new shards (and drop deleted or changed "
        "images) instead of rebuilding",
    )
    build.add_argument(
        "--on-disk",
        action="store_true",
        help="keep the inverted lists in a memory-mapped file (for indexes larger than RAM)",
    )
    add_engine_arguments(build, "add vectors in parallel Ray tasks, merged into an on-disk index")
    build.add_argument(
        "--keep-versions",
        type=int,
        default=defaults.keep_versions,
        help=f"versions to keep for rollback (default: {defaults.keep_versions})",
    )
    build.add_argument(
        "--eval-queries",
        type=int,
        default=defaults.eval_queries,
        help="queries of each kind used to measure recall: collection vectors for image "
        "queries; caption embeddings, or else the model's prompt set, for text queries "
        f"(default: {defaults.eval_queries})",
    )
    build.add_argument(
        "--no-caption-index",
        dest="index_captions",
        action="store_false",
        help="with caption embeddings in the shards: use them to measure and tune text "
        "queries, but build no caption search (the image index gets the whole budget)",
    )
    build.add_argument("--plot", type=Path, help="draw recall against queries/s to this PNG")
    build.set_defaults(run=run_build_command)


def run_build_command(args: argparse.Namespace) -> int:
    config = BuildConfig(
        shards=args.shards,
        out=args.out,
        memory_budget=args.memory_budget,
        index_factory=args.index_factory,
        target_recall=args.target_recall,
        add=args.add,
        on_disk=args.on_disk,
        engine=Engine(args.engine),
        ray_address=args.ray_address,
        keep_versions=args.keep_versions,
        eval_queries=args.eval_queries,
        index_captions=args.index_captions,
    )
    result = run_build(config)
    print(describe(result.manifest))
    print(result.describe())
    if args.plot:
        plot_curve(result.manifest, args.plot)
        print(f"recall curve drawn to {args.plot}")
    return 0


def describe(manifest: IndexManifest) -> str:
    lines = [
        f"{manifest.version}: {manifest.factory} over {manifest.count:,} vectors "
        f"({manifest.model}/{manifest.pretrained}, {manifest.dim}-d), "
        f"built in {manifest.build_seconds:.1f} s",
        *_kind("image queries", manifest.defaults(QueryKind.IMAGE), "collection vectors"),
        *_kind("text queries", manifest.defaults(QueryKind.TEXT), "collection vectors"),
    ]
    captions = manifest.captions
    if captions is not None:
        lines += [
            f"captions: {captions.factory} over {captions.count:,} caption vectors",
            *_kind("text queries on captions", captions.defaults(QueryKind.TEXT), "captions"),
            *_kind("image queries on captions", captions.defaults(QueryKind.IMAGE), "captions"),
        ]
    return "\n".join(lines)


SOURCES = {
    QuerySource.IMAGES: "images of the collection",
    QuerySource.CAPTIONS: "caption embeddings of the collection",
    QuerySource.PROMPTS: "prompts through the model's text tower",
}


def _kind(title: str, defaults: MeasuredDefaults, held_out: str) -> list[str]:
    """One kind of query's measurement: where its queries came from, and its curve."""
    if not defaults.measured:
        return [
            f"{title}: not measured ({defaults.note}); searched with nprobe "
            f"{defaults.default_nprobe}, re-rank {defaults.rerank_candidates}"
        ]
    source = SOURCES.get(defaults.source, f"held-out {held_out}")
    lines = [f"{title}: {defaults.eval_queries:,} {source}"]
    reached = defaults.reached
    exact = defaults.own_image_at_10_exact
    if reached is not None and reached.own_image_at_10 is not None and exact is not None:
        lines[0] += (
            f"; a caption's own image in the top 10: {reached.own_image_at_10:.3f} "
            f"(exact search: {exact:.3f})"
        )
    return lines + _curve(defaults.recall_curve, reached)


def _curve(points: list[CurvePoint], default: CurvePoint | None) -> list[str]:
    lines = [f"{'nprobe':>7} {'rerank':>7} {'recall@1':>9} {'recall@10':>10} {'queries/s':>10}"]
    for p in points:
        mark = " <- default" if p == default else ""
        lines.append(
            f"{p.nprobe:>7} {p.candidates:>7} {p.recall_at_1:>9.3f} {p.recall_at_10:>10.3f} "
            f"{p.queries_per_second:>10.0f}{mark}"
        )
    return lines
