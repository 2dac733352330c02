"""`clipsearch query`: ask a running server, print a table (or JSON with --json)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from clipsearch.cli.args import add_connection_arguments, client_tls
from clipsearch.client import (
    ImageQuery,
    ImageUrlQuery,
    ItemQuery,
    SearchClient,
    TextQuery,
)
from clipsearch.errors import ClipsearchError
from clipsearch.types import IndexInfo, LabelScore, Query, SearchResult

KEY_VAR = "CLIPSEARCH_API_KEY"


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Search a running server by text, image file or indexed item id; or "
        "classify an image against labels; or show what the server serves."
    )
    add_connection_arguments(parser, timeout_s=30.0)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="search by a description, e.g. 'a red bicycle in the snow'")
    what.add_argument("--image", type=Path, help="search by an example image file")
    what.add_argument(
        "--image-url", metavar="URL", help="search by an image URL the server fetches"
    )
    what.add_argument("--like", type=int, metavar="ID", help="items like this indexed item id")
    what.add_argument("--classify", type=Path, metavar="IMAGE", help="zero-shot classify a file")
    what.add_argument("--info", action="store_true", help="the served model and index")
    parser.add_argument("--labels", help="comma-separated labels for --classify, e.g. 'cat,dog'")
    parser.add_argument("--top-k", type=int, default=10, help="hits to return (default: 10)")
    parser.add_argument("--nprobe", type=int, help="search effort override for this query")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--api-key", help=f"the server's API key (default: ${KEY_VAR} if set)")
    parser.set_defaults(run=run_query_command)


def run_query_command(args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get(KEY_VAR)
    with SearchClient(args.server, args.timeout, api_key, client_tls(args)) as client:
        if args.info:
            info = client.index_info()
            print(json.dumps(asdict(info), indent=1) if args.json else format_info(info))
        elif args.classify:
            if not args.labels:
                raise ClipsearchError("--classify needs --labels, e.g. --labels 'cat,dog,car'")
            labels = [label.strip() for label in args.labels.split(",") if label.strip()]
            scores = client.classify(_read(args.classify), labels)
            print(json.dumps([asdict(s) for s in scores]) if args.json else format_scores(scores))
        else:
            result = client.search(_query(args), top_k=args.top_k, nprobe=args.nprobe)
            print(json.dumps(result.to_dict(), indent=1) if args.json else format_hits(result))
    return 0


def _query(args: argparse.Namespace) -> Query:
    if args.text is not None:
        return TextQuery(args.text)
    if args.image is not None:
        return ImageQuery(_read(args.image))
    if args.image_url is not None:
        return ImageUrlQuery(args.image_url)
    return ItemQuery(args.like)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ClipsearchError(f"cannot read {path}: {err.strerror}") from err


def format_hits(result: SearchResult) -> str:
    lines = [f"{'rank':>4}  {'score':>6}  {'id':>20}  uri / caption"]
    for rank, hit in enumerate(result.hits, 1):
        caption = f"  ({hit.caption})" if hit.caption else ""
        lines.append(f"{rank:>4}  {hit.score:6.3f}  {hit.id:>20}  {hit.uri}{caption}")
    t = result.timing
    lines.append(
        f"{len(result.hits)} hits from index {result.index_version} in {t.total_ms:.1f} ms "
        f"(encode {t.encode_ms:.1f}, search {t.search_ms:.1f})"
    )
    return "\n".join(lines)


def format_scores(scores: list[LabelScore]) -> str:
    width = max(len(s.label) for s in scores)
    return "\n".join(
        f"{s.label:<{width}}  {s.probability:6.1%}  (similarity {s.similarity:.3f})" for s in scores
    )


def format_info(info: IndexInfo) -> str:
    rows = [
        ("model", f"{info.model} / {info.pretrained or '-'} ({info.dim}-d, on {info.device})"),
        ("index version", info.index_version or "(none loaded)"),
        ("vectors", f"{info.count:,}"),
        ("factory", info.factory),
        ("defaults", f"nprobe {info.default_nprobe}, re-rank {info.default_candidates}"),
        ("recall@10", f"{info.recall_at_10:.3f} (target {info.target_recall:.2f})"),
    ]
    if info.refused_version:
        rows.append(("refused", f"{info.refused_version}: {info.refused_reason}"))
    return "\n".join(f"{name:<14} {value}" for name, value in rows)
