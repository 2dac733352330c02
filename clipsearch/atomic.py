"""Writing files so that readers see the old version or the new one, never a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

TMP_PREFIX = ".tmp-"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` for a temporary file beside `path`, fsync it, rename it over `path`."""
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    # mkstemp makes the file private (0600); give it the mode open() would have.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomically(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    write_atomically(path, write)


def fsync_dir(folder: Path) -> None:
    """Persist a rename: the directory entry must reach the disk too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporary_files(folder: Path) -> list[Path]:
    """Delete what an interrupted writer left behind; return what was removed."""
    removed = sorted(folder.glob(TMP_PREFIX + "*"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


@cache
def _umask() -> int:
    """The process umask (reading it means setting it, so read it once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
