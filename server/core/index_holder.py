"""The served index version, swapped atomically when the builder publishes a new one.

Requests take `holder.current` once and keep that reference, so in-flight work finishes
on the version it started with; the old version is freed when the last one lets go.
A version that fails to load or does not match the served model is refused and the
previous one keeps serving; it is not retried until CURRENT names another version. When
a refusal leaves nothing to serve (a start while CURRENT names a damaged version), the
newest good version on disk is served instead, and that is reported loudly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.index.manifest import VERSIONS_DIR, IndexManifest, current_version
from clipsearch.index.publish import list_versions
from clipsearch.index.version import IndexLoadError, IndexVersion

log = logging.getLogger(__name__)

# Versions kept loaded after a swap, for page tokens issued on them (each holds its index
# in memory; older ones are loaded from disk again when a token asks for them).
KEEP_RECENT = 1

# Returns why a manifest cannot be served with the loaded model, or None when it can.
CompatibilityCheck = Callable[[IndexManifest], str | None]


class ReloadFailedError(ClipsearchError):
    """CURRENT could not be read; whatever was served keeps serving."""


@dataclass(frozen=True)
class RefusedVersion:
    version: str
    reason: str


@dataclass(frozen=True)
class ReloadOutcome:
    version: str | None  # served after the reload
    changed: bool
    refused: RefusedVersion | None


class HolderEvents(Protocol):
    """What the holder reports (to metrics and health)."""

    def served(
        self, version: IndexVersion | None, refused: RefusedVersion | None, fallback: bool
    ) -> None: ...

    def reload_failed(self) -> None: ...


class IndexHolder:
    def __init__(
        self, index_dir: Path, compatible: CompatibilityCheck, events: HolderEvents | None = None
    ) -> None:
        self.index_dir = index_dir
        self._compatible = compatible
        self._events = events
        self._lock = threading.Lock()
        self.current: IndexVersion | None = None
        self.refused: RefusedVersion | None = None
        # True while serving another version than CURRENT names (it was refused).
        self.fallback = False
        self.reload_error: str | None = None  # the last reload's failure, until one succeeds
        self._refused_path: Path | None = None
        # Versions recently served, so a page token outlives a hot reload.
        self._recent: dict[str, IndexVersion] = {}

    def reload(self) -> ReloadOutcome:
        """Serve the version CURRENT names, if it is new and sound. Raises ReloadFailedError
        when CURRENT cannot be read."""
        with self._lock:
            try:
                target = current_version(self.index_dir)
            except (OSError, UnicodeDecodeError) as err:
                if self.current is None and self._fall_back(None):
                    self._notify()
                raise ReloadFailedError(
                    f"cannot read {self.index_dir}/CURRENT: {err}; still serving "
                    f"{self._served_name() or 'nothing'}"
                ) from err
            self.reload_error = None
            served = self.current.path if self.current is not None else None
            if target is None or target in (served, self._refused_path):
                return ReloadOutcome(self._served_name(), False, self.refused)
            try:
                version = _load(target, self._compatible)
            except IndexLoadError as err:
                before = self.current
                self._refuse(target, err)
                return ReloadOutcome(self._served_name(), self.current is not before, self.refused)
            self._keep_recent(self.current)
            self.current = version
            self.refused, self._refused_path, self.fallback = None, None, False
            log.info(
                "serving index version %s (%d vectors, %s)",
                version.name,
                version.manifest.count,
                version.manifest.factory,
                extra={"event": "index_loaded", "index_version": version.name},
            )
            self._notify()
            return ReloadOutcome(version.name, True, None)

    def version_named(self, name: str) -> IndexVersion | None:
        """The version of that name: the served one, one served recently, or one still on
        disk (loaded and checked as any other); None when it is gone or unusable."""
        current = self.current
        if current is not None and current.name == name:
            return current
        with self._lock:
            if name in self._recent:
                return self._recent[name]
            path = self.index_dir / VERSIONS_DIR / name
            if name not in list_versions(self.index_dir):
                return None
            try:
                version = _load(path, self._compatible)
            except IndexLoadError:
                return None
            self._keep_recent(version)
            return version

    def _keep_recent(self, version: IndexVersion | None) -> None:
        if version is None:
            return
        self._recent[version.name] = version
        while len(self._recent) > KEEP_RECENT:
            del self._recent[next(iter(self._recent))]  # the oldest: dicts keep order

    def watch(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        """Poll CURRENT every `interval_s` in a background thread until `stop` is set. A
        failed check is logged, counted and retried at the next interval: the thread
        never dies of it."""

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.reload()
                except Exception as err:  # any failure is reported, then retried
                    self._failed(err)

        thread = threading.Thread(target=loop, name="index-watch", daemon=True)
        thread.start()
        return thread

    def _failed(self, err: Exception) -> None:
        self.reload_error = str(err)
        if isinstance(err, ReloadFailedError):
            log.error("%s", err, extra={"event": "reload_failed"})
        else:
            log.exception(
                "checking for a new index version failed", extra={"event": "reload_failed"}
            )
        if self._events is not None:
            self._events.reload_failed()

    def _refuse(self, target: Path, err: IndexLoadError) -> None:
        self.refused = RefusedVersion(target.name, str(err))
        self._refused_path = target
        log.error(
            "refused index version %s, still serving %s: %s",
            target.name,
            self._served_name() or "nothing",
            err,
            extra={"event": "index_refused", "index_version": target.name},
        )
        if self.current is None:
            self._fall_back(target)
        self._notify()

    def _fall_back(self, refused: Path | None) -> bool:
        """Serve the newest version on disk that loads, rather than nothing. `refused` is
        the version CURRENT names (None: CURRENT cannot be read)."""
        for name in reversed(list_versions(self.index_dir)):
            path = self.index_dir / VERSIONS_DIR / name
            if path == refused:
                continue
            try:
                self.current = _load(path, self._compatible)
            except IndexLoadError as err:
                log.warning("cannot fall back to %s either: %s", name, err)
                continue
            self.fallback = True
            problem = (
                f"CURRENT names {refused.name}, which was refused"
                if refused
                else ("CURRENT cannot be read")
            )
            log.error(
                "%s; serving %s, the newest good version, instead. Publish a good version "
                "(or `clipsearch versions --use`) to end this", problem, name,
                extra={"event": "index_fallback", "index_version": name},
            )  # fmt: skip
            return True
        return False

    def _served_name(self) -> str | None:
        return self.current.name if self.current is not None else None

    def _notify(self) -> None:
        if self._events is not None:
            self._events.served(self.current, self.refused, self.fallback)


def _load(path: Path, compatible: CompatibilityCheck) -> IndexVersion:
    started = time.monotonic()
    version = IndexVersion(path)
    problem = compatible(version.manifest)
    if problem is not None:
        raise IndexLoadError(f"{path}: {problem}")
    _warm_up(version)
    log.debug("loaded %s in %.2f s", path, time.monotonic() - started)
    return version


def _warm_up(version: IndexVersion) -> None:
    """One real search before serving: a version that cannot answer is refused, not swapped in."""
    if version.manifest.rows == 0:
        return
    probe = np.asarray(version.vectors[:1], dtype=np.float32)
    try:
        version.search(probe, 1)
        version.records.get(0)
    except (RuntimeError, ValueError, IndexError, OSError) as err:
        raise IndexLoadError(f"{version.path}: a test search failed: {err}") from err
