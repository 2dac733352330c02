"""The shard folder an embed or import job writes: locked for the job, cleared of what a
crashed run left, and removed again when this job created it and failed before writing."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from clipsearch.atomic import remove_temporary_files
from clipsearch.collection.manifest import Manifest
from clipsearch.collection.shards import orphan_files
from clipsearch.indexer.lock import LOCK_NAME, exclusive

log = logging.getLogger(__name__)


@contextmanager
def writing_to(out: Path, job: str) -> Iterator[None]:
    """`out`, created if missing and locked for `job` while the block runs. A failed run
    leaves it as it found it: a folder this run created and wrote nothing into is removed."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(out, job):
            yield
    except BaseException:
        if created and all(p.name == LOCK_NAME for p in out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise


def remove_leftovers(out: Path, manifest: Manifest) -> None:
    """What a crashed run left: temporary files, and shards written but never committed."""
    for path in remove_temporary_files(out):
        log.info("removed %s, left by an interrupted run", path.name)
    for path in orphan_files(out, manifest):
        log.info("removed %s: written but never committed by an interrupted run", path.name)
        path.unlink()


def now() -> str:
    """A run record's time: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
