"""`clipsearch import`: the command line of the import job (`import` is a Python keyword,
hence the module's name)."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.collection.manifest import VectorDtype
from clipsearch.indexer.imports import ImportConfig, ImportSource, SourceKind, run_import
from clipsearch.models import ModelSpec


def register(parser: argparse.ArgumentParser) -> None:
    defaults = ImportConfig(ImportSource(""), Path(), ModelSpec())
    parser.description = (
        "Turn embeddings made elsewhere into Parquet shards in --out, without running the "
        "model: clip-retrieval output, .npy files, or Parquet tables with an embedding "
        "column. Name the model the vectors came from (--model, --pretrained): the server "
        "encodes queries with it. Rerunning the same command resumes an interrupted run "
        "and imports only new or changed rows; rows gone from SOURCE are recorded as deleted."
    )
    parser.add_argument(
        "source",
        help="a `clip-retrieval inference` output folder (img_emb/, text_emb/, metadata/), a "
        ".npy file or a folder of them, or a Parquet file, a folder of them or a glob",
    )
    parser.add_argument("--out", type=Path, required=True, help="the shards folder")
    parser.add_argument(
        "--source-format",
        type=SourceKind,
        choices=list(SourceKind),
        default=SourceKind.AUTO,
        help="what SOURCE is (default: auto, from its files)",
    )
    parser.add_argument(
        "--embedding-column",
        help="Parquet sources: the column of vectors (default: the first of embedding, "
        "image_embedding, emb, vector that holds lists of floats)",
    )
    parser.add_argument(
        "--uri-column",
        help="the column of image paths or URLs that identify the items (default: guessed: "
        "url, then image_path, in clip-retrieval metadata; image_path, path, filepath, file, "
        "uri, url elsewhere)",
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="store float32 vectors (default: float16, half the size, same search quality)",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=defaults.shard_size,
        help=f"rows per Parquet shard (default: {defaults.shard_size})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("the model the vectors came from (required)")
    group.add_argument(
        "--model", required=True, help="OpenCLIP architecture, e.g. ViT-L-14 or ViT-B-32"
    )
    group.add_argument(
        "--pretrained",
        required=True,
        help="its weights: a pretrained tag (e.g. laion2b_s32b_b82k), an hf-hub:ORG/REPO id, "
        "a checkpoint file, or 'none'; a tag needs no weights on this host for importing",
    )
    group.add_argument(
        "--preprocess-tag",
        metavar="TAG",
        help="for a checkpoint file: the pretrained tag it came from, whose preprocessing "
        "the server must use for queries",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = ImportConfig(
        source=ImportSource(
            args.source, args.source_format, args.embedding_column, args.uri_column
        ),
        out=args.out,
        model=ModelSpec(args.model, args.pretrained, args.preprocess_tag),
        embedding_dtype=VectorDtype.FLOAT32 if args.float32 else VectorDtype.FLOAT16,
        shard_size=args.shard_size,
        quiet=args.quiet,
    )
    print(run_import(config).describe())
    return 0
