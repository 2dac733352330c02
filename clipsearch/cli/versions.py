"""`clipsearch versions`: list the published versions of an index folder, or switch the
served one (rollback). Reads manifests only: no faiss import."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.errors import ClipsearchError
from clipsearch.index.manifest import (
    MANIFEST_FILE,
    VERSIONS_DIR,
    IndexManifest,
    MeasuredDefaults,
    current_version,
)
from clipsearch.index.publish import list_versions, switch_current
from clipsearch.types import QueryKind, QuerySource


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the versions in an index folder with their recall (image and text queries), "
        "or make another version "
        "current with --use (servers watching the folder switch to it)."
    )
    parser.add_argument("index", type=Path, help="the index folder")
    parser.add_argument("--use", metavar="VERSION", help="make this version current")
    parser.set_defaults(run=run_versions_command)


def run_versions_command(args: argparse.Namespace) -> int:
    if not args.index.is_dir():
        raise ClipsearchError(
            f"{args.index} is not a folder", hint="give the folder `clipsearch build --out` wrote"
        )
    if not list_versions(args.index):
        raise ClipsearchError(
            f"{args.index} holds no index versions",
            hint=f"build one with `clipsearch build SHARDS --out {args.index}`",
        )
    if args.use:
        switch_current(args.index, args.use)
        print(f"{args.index}: now serving {args.use}")
        return 0
    current = current_version(args.index)
    for name in list_versions(args.index):
        manifest = IndexManifest.from_json(
            (args.index / VERSIONS_DIR / name / MANIFEST_FILE).read_text()
        )
        mark = "*" if current is not None and current.name == name else " "
        recall = "  ".join(_recall(manifest.defaults(kind), kind) for kind in QueryKind)
        captions = f"  {manifest.captions.count:,} captions" if manifest.captions else ""
        print(
            f"{mark} {name}  {manifest.created}  {manifest.count:>10,} vectors  {recall}{captions}"
        )
    return 0


def _recall(defaults: MeasuredDefaults, kind: QueryKind) -> str:
    """e.g. "text recall@10 0.951 (prompts)"; "text not measured" without a measurement."""
    reached = defaults.reached
    if not defaults.measured or reached is None:
        return f"{kind.value} not measured"
    source = "" if defaults.source is QuerySource.HELD_OUT else f" ({defaults.source.value})"
    return f"{kind.value} recall@10 {reached.recall_at_10:.3f}{source}"
