"""One writer per folder: a second embed or build on the same folder is refused."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clipsearch.errors import ClipsearchError

LOCK_NAME = ".lock"


class LockedError(ClipsearchError):
    """Another clipsearch job is writing to the same folder."""


@contextmanager
def exclusive(folder: Path, job: str) -> Iterator[None]:
    with open(folder / LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise LockedError(f"{folder}: another clipsearch {job} is writing here") from err
        yield
