"""The `clipsearch` command: one entry point, a subcommand per job.

Each subcommand lives in its own module, imported only when it runs, so `clipsearch
--help`, `query` and `health` never import torch or faiss.

Expected failures print `clipsearch: error: WHAT` and, where there is one, `hint: WHAT TO
DO`, with no traceback unless --debug (or CLIPSEARCH_DEBUG=1). Exit codes: 0 success,
1 failure, 2 usage, 3 `embed` skipped some inputs, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from types import FrameType

from clipsearch.errors import ClipsearchError, Interrupted

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
DEBUG_VAR = "CLIPSEARCH_DEBUG"


@dataclass(frozen=True)
class Command:
    module: str  # registers the subcommand's flags and sets `run`
    help: str


COMMANDS: dict[str, Command] = {
    "models": Command(
        "clipsearch.cli.models",
        "list the seed models and whether their weights are cached on this host",
    ),
    "encode": Command(
        "clipsearch.cli.encode",
        "embed images and texts with the CLIP model and print their similarities",
    ),
    "embed": Command("clipsearch.cli.embed", "embed an image collection into Parquet shards"),
    "import": Command(
        "clipsearch.cli.imports",
        "turn existing embeddings (clip-retrieval output, .npy, Parquet) into Parquet shards "
        "without running the model",
    ),
    "build": Command(
        "clipsearch.cli.build",
        "build a FAISS index from Parquet shards and publish it as a new version",
    ),
    "versions": Command(
        "clipsearch.cli.versions",
        "list index versions, or switch the served version (rollback)",
    ),
    "serve": Command(
        "clipsearch.cli.serve",
        "serve an index over gRPC (and HTTP): search by text, image, vector or item; embed; "
        "classify",
    ),
    "query": Command("clipsearch.cli.query", "query a running clipsearch server"),
    "health": Command(
        "clipsearch.cli.health", "check whether a server is SERVING (exit 0) or not (exit 1)"
    ),
}


def build_parser(full: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser. The subcommands named in `full` (default: all) are imported and fully
    registered; the others are listed with their help only."""
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
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show tracebacks of failures (also: {DEBUG_VAR}=1)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        if full is None or name in full:
            importlib.import_module(command.module).register(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each subcommand, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_in(argv: list[str]) -> str | None:
    """The subcommand argv names, found without importing any of them."""
    return next((arg for arg in argv if arg in COMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = _command_in(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_VAR, "") not in ("", "0")
    configure_logging(args.log_level)
    with _sigterm_as_ctrl_c():
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        if debug:
            raise
        report("interrupted; nothing half-done was kept", "run the same command again")
        return EXIT_INTERRUPTED
    except Interrupted as err:
        if debug:
            raise
        report(str(err), err.hint)
        return EXIT_INTERRUPTED
    except ClipsearchError as err:
        if debug:
            raise
        report(str(err), err.hint)
        return EXIT_FAILURE
    except OSError as err:  # a full disk, a lost mount: say so, not with a traceback
        if debug:
            raise
        report(*describe_os_error(err))
        return EXIT_FAILURE


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM stops a command like Ctrl-C: cleanly, with exit 130 (`serve` drains instead)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def report(what: str, hint: str | None = None) -> None:
    print(f"clipsearch: error: {what}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


OUT_OF_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def describe_os_error(err: OSError) -> tuple[str, str | None]:
    text = f"{err.strerror}: {err.filename}" if err.strerror and err.filename else str(err)
    out_of_space = err.errno in OUT_OF_SPACE or any(
        os.strerror(code) in str(err) for code in OUT_OF_SPACE
    )
    if out_of_space:
        return text + " (out of disk space or over a file size limit)", (
            "free space and run the same command again; committed work is kept and nothing "
            "half-written is published"
        )
    return text, None


def configure_logging(level: str) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING
    )
    logging.getLogger("clipsearch").setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
