"""Publishing index versions atomically, keeping old ones, and switching between them."""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from clipsearch.atomic import fsync_dir, write_text_atomically
from clipsearch.errors import ClipsearchError
from clipsearch.index.manifest import CURRENT_FILE, VERSIONS_DIR

log = logging.getLogger(__name__)
BUILDING_PREFIX = ".building-"
_VERSION = re.compile(r"^v(\d{6})$")


class VersionError(ClipsearchError):
    """A version that does not exist was asked for."""


def new_workdir(index_dir: Path) -> Path:
    """A private folder for a build; invisible to servers until published."""
    workdir = index_dir / f"{BUILDING_PREFIX}{uuid.uuid4().hex[:12]}"
    workdir.mkdir(parents=True)
    return workdir


def remove_abandoned_builds(index_dir: Path) -> None:
    for path in index_dir.glob(BUILDING_PREFIX + "*"):
        log.info("removing %s, left by an interrupted build", path.name)
        shutil.rmtree(path, ignore_errors=True)


def list_versions(index_dir: Path) -> list[str]:
    folder = index_dir / VERSIONS_DIR
    names = [p.name for p in folder.iterdir() if _VERSION.match(p.name)] if folder.exists() else []
    return sorted(names)


def next_version(index_dir: Path) -> str:
    versions = list_versions(index_dir)
    last = int(_VERSION.match(versions[-1]).group(1)) if versions else 0  # type: ignore[union-attr]
    return f"v{last + 1:06d}"


def publish(workdir: Path, index_dir: Path, name: str, keep: int) -> Path:
    """Make a finished build durable, move it into versions/, then point CURRENT at it."""
    for path in workdir.iterdir():
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
    fsync_dir(workdir)
    versions = index_dir / VERSIONS_DIR
    versions.mkdir(exist_ok=True)
    target = versions / name
    os.rename(workdir, target)
    fsync_dir(versions)
    switch_current(index_dir, name)
    prune(index_dir, keep)
    return target


def switch_current(index_dir: Path, name: str) -> None:
    if name not in list_versions(index_dir):
        raise VersionError(f"{index_dir} has no version {name}; it has {list_versions(index_dir)}")
    write_text_atomically(index_dir / CURRENT_FILE, name + "\n")


def prune(index_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` versions; never the current one."""
    current = (index_dir / CURRENT_FILE).read_text().strip()
    for name in list_versions(index_dir)[: -max(keep, 1)]:
        if name != current:
            shutil.rmtree(index_dir / VERSIONS_DIR / name)
            log.info("removed old version %s (keeping %d)", name, keep)
