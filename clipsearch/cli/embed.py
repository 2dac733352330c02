"""`clipsearch embed`: the command line of the embedding job."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.cli.args import add_engine_arguments, add_model_arguments, model_spec
from clipsearch.collection.manifest import VectorDtype, read_manifest
from clipsearch.collection.shards import live_errors
from clipsearch.indexer.embed.job import EmbedConfig, run_embed
from clipsearch.indexer.embed.sources import SourceFormat, SourceSpec
from clipsearch.indexer.engine import Engine

EXIT_SKIPPED = 3


def register(parser: argparse.ArgumentParser) -> None:
    defaults = EmbedConfig(SourceSpec(""), Path())
    parser.description = (
        "Embed every image of SOURCE into Parquet shards in --out. Rerunning the "
        "same command resumes an interrupted run and embeds only new or changed images; "
        "images gone from SOURCE are recorded as deleted. Exit status: 0 when every input "
        f"was embedded, {EXIT_SKIPPED} when some were skipped (see errors-*.parquet), "
        "1 on error."
    )
    parser.add_argument(
        "source",
        help="a directory of images (with optional same-name .txt/.json sidecars), a .parquet "
        "or .csv table of image paths or image bytes, webdataset .tar shards (a file, a "
        "directory of them, or a glob), or an fsspec URL of any of these",
    )
    parser.add_argument("--out", type=Path, required=True, help="the shards folder")
    parser.add_argument(
        "--source-format",
        type=SourceFormat,
        choices=list(SourceFormat),
        default=SourceFormat.AUTO,
        help="what SOURCE is (default: auto, from its files)",
    )
    parser.add_argument(
        "--path-column", help="table sources: the column of image paths/URLs (default: guessed)"
    )
    parser.add_argument(
        "--image-column", help="table sources: the column of image bytes (default: guessed)"
    )
    parser.add_argument(
        "--embed-captions",
        action="store_true",
        help="also embed captions into a text_embedding column",
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="store float32 vectors (default: float16, half the size, same search quality)",
    )
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=defaults.worker_timeout_s,
        help="fail when no decoded batch arrives for this many seconds, instead of hanging "
        f"(default: {defaults.worker_timeout_s:g})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"images per encode (default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="decoding processes beside the encoder (default: the cores this process may use, "
        f"less one for the encoder: {defaults.workers} here; 0 decodes in the main process)",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=defaults.shard_size,
        help="images per Parquet shard; also how much work an interruption can lose "
        f"(default: {defaults.shard_size})",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=defaults.max_pixels,
        help=f"skip images larger than this (default: {defaults.max_pixels:,})",
    )
    add_engine_arguments(parser, "reading and decoding on Ray workers, encoding in an actor pool")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = EmbedConfig(
        source=SourceSpec(args.source, args.source_format, args.path_column, args.image_column),
        out=args.out,
        model=model_spec(args),
        batch_size=args.batch_size,
        workers=args.workers,
        shard_size=args.shard_size,
        embedding_dtype=VectorDtype.FLOAT32 if args.float32 else VectorDtype.FLOAT16,
        embed_captions=args.embed_captions,
        max_pixels=args.max_pixels,
        engine=Engine(args.engine),
        ray_address=args.ray_address,
        quiet=args.quiet,
        worker_timeout_s=args.worker_timeout,
    )
    summary = run_embed(config)
    print(summary.describe())
    if summary.skipped:
        manifest = read_manifest(args.out)
        assert manifest is not None
        for row in list(live_errors(args.out, manifest))[:10]:
            print(f"  skipped {row['uri']}: {row['reason']}: {row['detail']}")
        print(f"the full list is in {args.out}/errors-*.parquet")
        return EXIT_SKIPPED
    return 0
