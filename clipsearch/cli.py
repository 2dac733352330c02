"""The `clipsearch` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys

from clipsearch.commands import encode, models, query
from clipsearch.errors import ClipsearchError
from indexer import build_cli
from indexer import cli as indexer_cli
from server import cli as server_cli

COMMANDS = (models, encode, indexer_cli, build_cli, server_cli, query)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipsearch",
        description="Search image collections by text or by example image with CLIP.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much clipsearch logs to stderr (default: INFO)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each subcommand, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.run(args))
    except ClipsearchError as err:
        print(f"clipsearch: error: {err}", file=sys.stderr)
        return 1


def configure_logging(level: str) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING
    )
    for name in ("clipsearch", "indexer", "server"):
        logging.getLogger(name).setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
