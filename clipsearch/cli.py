"""The `clipsearch` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from clipsearch.commands import encode, health, models, query
from clipsearch.errors import ClipsearchError
from indexer import build_cli
from indexer import cli as indexer_cli
from server import cli as server_cli

COMMANDS = (models, encode, indexer_cli, build_cli, server_cli, query, health)


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
    except OSError as err:  # a full disk, a lost mount: say so, not with a traceback
        print(f"clipsearch: error: {describe_os_error(err)}", file=sys.stderr)
        return 1


OUT_OF_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def describe_os_error(err: OSError) -> str:
    text = f"{err.strerror}: {err.filename}" if err.strerror and err.filename else str(err)
    out_of_space = err.errno in OUT_OF_SPACE or any(
        os.strerror(code) in str(err) for code in OUT_OF_SPACE
    )
    if out_of_space:
        text += (
            " (out of disk space or over a file size limit: free space and run the same "
            "command again; committed work is kept and nothing half-written is published)"
        )
    return text


def configure_logging(level: str) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING
    )
    for name in ("clipsearch", "indexer", "server"):
        logging.getLogger(name).setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
