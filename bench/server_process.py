"""`clipsearch serve` in a child process for a benchmark: started, its address read from
the line it prints once serving, and stopped (SIGTERM, then SIGKILL) when the block ends."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ServerStartError(Exception):
    """The server exited instead of serving; the message ends with its log's tail."""


@contextmanager
def serve_process(
    argv: list[str], log: Path, timeout_s: float, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run `argv` (a `clipsearch serve` command line) with its stderr in `log`; yields the
    process and the HOST:PORT it serves gRPC on."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "clipsearch: serving on HOST:PORT"
        if "serving on" not in line:
            process.wait(timeout_s)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise ServerStartError(f"{argv[0]} serve exited {process.returncode} ({log}):\n{tail}")
        yield process, line.split()[-1]
    finally:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
