"""`clipsearch query`: ask a running server, print a table (or JSON with --json)."""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import asdict
from pathlib import Path

from clipsearch.cli.args import add_connection_arguments, client_tls
from clipsearch.client import (
    Collapse,
    ImageQuery,
    ImageUrlQuery,
    ItemQuery,
    SearchClient,
    Target,
    TextQuery,
)
from clipsearch.errors import ClipsearchError
from clipsearch.filters import (
    AllOf,
    Between,
    Condition,
    Equals,
    Exists,
    Filter,
    In,
    NotIn,
    Prefix,
    Scalar,
)
from clipsearch.types import (
    DEFAULT_COLLAPSE_THRESHOLD,
    IndexInfo,
    LabelScore,
    Query,
    SearchDefaults,
    SearchResult,
)

KEY_VAR = "CLIPSEARCH_API_KEY"
WHERE_FORMS = (
    "write 'FIELD OP VALUE' with OP one of = != < <= > >=, 'FIELD in V1,V2,...', "
    "'FIELD prefix TEXT', 'FIELD exists' or 'FIELD missing', e.g. 'metadata.year >= 2023'"
)
# The field runs up to a space or a comparison sign; word operators stand apart.
_WHERE = re.compile(
    r"(?P<field>[^\s=!<>]+)\s*(?P<op>==?|!=|<=|>=|<|>|\s(?:in|prefix|exists|missing)\b)\s*"
    r"(?P<value>.*)",
    re.DOTALL,
)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_BOUNDS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


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
    what.add_argument(
        "--info", action="store_true", help="the served model and index, and its filterable fields"
    )
    parser.add_argument("--labels", help="comma-separated labels for --classify, e.g. 'cat,dog'")
    parser.add_argument("--top-k", type=int, default=10, help="hits per page (default: 10)")
    parser.add_argument("--nprobe", type=int, help="search effort override for this query")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of a table; a search prints each page's response (the JSON "
        "shape of clipsearch.v1.SearchResponse) as one line, so --pages N prints up to N lines",
    )
    parser.add_argument("--api-key", help=f"the server's API key (default: ${KEY_VAR} if set)")
    parser.add_argument(
        "--index",
        default="",
        metavar="NAME",
        help="which served index (needed when the server serves several; `--info` lists them)",
    )
    _register_steering(parser)
    parser.set_defaults(run=run_query_command)


def _register_steering(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("steering a search")
    group.add_argument(
        "--where",
        action="append",
        type=_where_argument,
        default=[],
        metavar="'FIELD OP VALUE'",
        help="only items whose field passes; repeat it and all must hold. OP: = != < <= > >= "
        "in (comma-separated values) prefix exists missing, e.g. 'metadata.year >= 2023', "
        "'uri prefix /photos/', 'metadata.tags in holiday,beach', 'caption exists'. Values "
        "that read as numbers (or true/false) are sent as such, others as text; quote one to "
        "send it as text: \"metadata.code = '0042'\". != passes items without the field. "
        "`--info` lists the fields",
    )
    group.add_argument(
        "--min-score",
        type=_score,
        metavar="SCORE",
        help="only hits scoring (cosine similarity) at least this, from -1 to 1",
    )
    group.add_argument(
        "--collapse",
        type=_threshold,
        nargs="?",
        const=DEFAULT_COLLAPSE_THRESHOLD,
        metavar="THRESHOLD",
        help="fold near-duplicates into the best hit they resemble: hits at or above this "
        f"cosine similarity to a better one (default: {DEFAULT_COLLAPSE_THRESHOLD})",
    )
    group.add_argument(
        "--captions",
        action="store_true",
        help="search the indexed captions instead of the images (needs an index embedded "
        "with --embed-captions)",
    )
    group.add_argument(
        "--page-token",
        default="",
        metavar="TOKEN",
        help="continue an earlier search from the token its output printed; repeat the "
        "search's other flags unchanged",
    )
    group.add_argument(
        "--pages",
        type=_positive,
        default=1,
        metavar="N",
        help="fetch N pages of --top-k hits, following each page's token, and print them all "
        "(fewer when the hits run out; default: 1)",
    )


def run_query_command(args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get(KEY_VAR)
    with SearchClient(args.server, args.timeout, api_key, client_tls(args)) as client:
        if args.info:
            info = client.index_info(args.index)
            print(json.dumps(asdict(info), indent=1) if args.json else format_info(info))
        elif args.classify:
            if not args.labels:
                raise ClipsearchError("--classify needs --labels, e.g. --labels 'cat,dog,car'")
            labels = [label.strip() for label in args.labels.split(",") if label.strip()]
            scores = client.classify(_read(args.classify), labels, index=args.index)
            print(json.dumps([asdict(s) for s in scores]) if args.json else format_scores(scores))
        else:
            pages = _search(client, args)
            if args.json:
                print("\n".join(json.dumps(page.to_dict()) for page in pages))
            else:
                print(format_pages(pages))
    return 0


def _search(client: SearchClient, args: argparse.Namespace) -> list[SearchResult]:
    """--pages pages from --page-token on, each asked with the same query and options (a
    token continues only the search that issued it)."""
    query = _query(args)
    collapse = Collapse(args.collapse) if args.collapse is not None else None
    target = Target.CAPTIONS if args.captions else Target.IMAGES
    pages: list[SearchResult] = []
    token = args.page_token
    for _ in range(args.pages):
        page = client.search(
            query,
            top_k=args.top_k,
            nprobe=args.nprobe,
            filter=all_of(args.where),
            min_score=args.min_score,
            collapse=collapse,
            target=target,
            page_token=token,
            index=args.index,
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            break
    return pages


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


# --- --where: "FIELD OP VALUE" to a typed condition --------------------------------------


def parse_where(text: str) -> Condition:
    """One --where as a condition; ValueError says what is wrong with it."""
    match = _WHERE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a condition")
    name, op, value = match["field"], match["op"].strip(), match["value"].strip()
    if value[:1] in ("=", "<", ">", "!") and not op.isalpha():  # e.g. `=>`, `<>`: a typo
        raise ValueError(f"{text!r}: {op}{value[0]} is not an operator")
    if op in ("exists", "missing"):
        if value:
            raise ValueError(f"{text!r}: {op} takes no value")
        return Condition(name, Exists(op == "exists"))
    if not value:
        raise ValueError(f"{text!r}: {op} needs a value")
    if op == "prefix":
        quoted = _unquoted(value)
        return Condition(name, Prefix(value if quoted is None else quoted))
    if op == "in":
        values = [part.strip() for part in value.split(",")]
        if not all(values):
            raise ValueError(f"{text!r}: in has an empty value between its commas")
        return Condition(name, In(tuple(scalar(v) for v in values)))
    if op in ("=", "=="):
        return Condition(name, Equals(scalar(value)))
    if op == "!=":
        return Condition(name, NotIn((scalar(value),)))
    return Condition(name, Between(**{_BOUNDS[op]: scalar(value)}))


def scalar(text: str) -> Scalar:
    """A value as typed: quoted text stays text; else a number, true/false, or text."""
    quoted = _unquoted(text)
    if quoted is not None:
        return quoted
    if _NUMBER.fullmatch(text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def _unquoted(text: str) -> str | None:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return None


def all_of(conditions: list[Condition]) -> Filter | None:
    """Every condition must hold (None: no filter)."""
    if len(conditions) > 1:
        return AllOf(tuple(conditions))
    return conditions[0] if conditions else None


def _where_argument(text: str) -> Condition:
    try:
        return parse_where(text)
    except ValueError as err:  # argparse then reports a usage error naming --where
        raise argparse.ArgumentTypeError(f"{err}; {WHERE_FORMS}") from err


def _score(text: str) -> float:
    value = _float(text)
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a cosine similarity (-1 to 1)")
    return value


def _threshold(text: str) -> float:
    value = _float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a similarity in (0, 1], e.g. 0.94")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


# --- output ---------------------------------------------------------------------------


def format_pages(pages: list[SearchResult]) -> str:
    """One table over the pages, ranks running on, then how to ask for the next page."""
    lines = [f"{'rank':>4}  {'score':>6}  {'id':>20}  uri / caption"]
    hits = [hit for page in pages for hit in page.hits]
    for rank, hit in enumerate(hits, 1):
        caption = f"  ({hit.caption})" if hit.caption else ""
        similar = f"  +{hit.duplicates} similar" if hit.duplicates else ""
        lines.append(f"{rank:>4}  {hit.score:6.3f}  {hit.id:>20}  {hit.uri}{caption}{similar}")
    total, encode, search = (
        sum(getattr(page.timing, part) for page in pages)
        for part in ("total_ms", "encode_ms", "search_ms")
    )
    on_pages = f" on {len(pages)} pages" if len(pages) > 1 else ""
    lines.append(
        f"{len(hits)} hits{on_pages} from index {pages[-1].index_version} in {total:.1f} ms "
        f"(encode {encode:.1f}, search {search:.1f})"
    )
    if pages[-1].next_page_token:
        lines.append(f"next page: --page-token {pages[-1].next_page_token}")
    return "\n".join(lines)


def format_scores(scores: list[LabelScore]) -> str:
    width = max(len(s.label) for s in scores)
    return "\n".join(
        f"{s.label:<{width}}  {s.probability:6.1%}  (similarity {s.similarity:.3f})" for s in scores
    )


def format_info(info: IndexInfo) -> str:
    fields = ", ".join(f"{f.name} ({f.type.value}{' list' if f.list else ''})" for f in info.fields)
    rows = [
        ("index", f"{info.index} (served: {', '.join(info.served_indexes) or info.index})"),
        ("model", f"{info.model} / {info.pretrained or '-'} ({info.dim}-d, on {info.device})"),
        ("index version", info.index_version or "(none loaded)"),
        ("vectors", f"{info.count:,}"),
        ("factory", info.factory),
        ("image defaults", f"nprobe {info.default_nprobe}, re-rank {info.default_candidates}"),
        ("image recall@10", f"{info.recall_at_10:.3f} (target {info.target_recall:.2f})"),
        ("text defaults", f"nprobe {info.text.nprobe}, re-rank {info.text.candidates}"),
        ("text recall@10", _text_recall(info.text)),
        ("fields", fields or "(none: built before filters)"),
        ("captions", "indexed (--captions)" if info.captions else "not indexed"),
    ]
    if info.refused_version:
        rows.append(("refused", f"{info.refused_version}: {info.refused_reason}"))
    return "\n".join(f"{name:<16} {value}" for name, value in rows)


def _text_recall(text: SearchDefaults) -> str:
    if not text.measured:
        return "not measured (text queries use the image defaults)"
    line = f"{text.recall_at_10:.3f} on {text.source.value}"
    if text.own_image_at_10 is not None and text.own_image_at_10_exact is not None:
        line += (
            f"; a caption's own image in the top 10: {text.own_image_at_10:.3f} "
            f"(exact {text.own_image_at_10_exact:.3f})"
        )
    return line
