"""The served index version, swapped atomically when the builder publishes a new one.

Requests take `holder.current` once and keep that reference, so in-flight work finishes
on the version it started with; the old version is freed when the last one lets go.
A version that fails to load or does not match the served model is refused and the
previous one keeps serving; it is not retried until CURRENT names another version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsearch.index.manifest import IndexManifest, current_version
from clipsearch.index.version import IndexLoadError, IndexVersion

log = logging.getLogger(__name__)

# Returns why a manifest cannot be served with the loaded model, or None when it can.
CompatibilityCheck = Callable[[IndexManifest], str | None]


@dataclass(frozen=True)
class RefusedVersion:
    version: str
    reason: str


@dataclass(frozen=True)
class ReloadOutcome:
    version: str | None  # served after the reload
    changed: bool
    refused: RefusedVersion | None


class IndexHolder:
    def __init__(
        self,
        index_dir: Path,
        compatible: CompatibilityCheck,
        on_change: Callable[[IndexVersion | None, RefusedVersion | None], None] | None = None,
    ) -> None:
        self.index_dir = index_dir
        self._compatible = compatible
        self._on_change = on_change
        self._lock = threading.Lock()
        self.current: IndexVersion | None = None
        self.refused: RefusedVersion | None = None
        self._refused_path: Path | None = None

    def reload(self) -> ReloadOutcome:
        """Serve the version CURRENT names, if it is new and sound."""
        with self._lock:
            target = current_version(self.index_dir)
            served = self.current.path if self.current is not None else None
            if target is None or target in (served, self._refused_path):
                return ReloadOutcome(self._served_name(), False, self.refused)
            try:
                version = _load(target, self._compatible)
            except IndexLoadError as err:
                self.refused = RefusedVersion(target.name, str(err))
                self._refused_path = target
                log.error(
                    "refused index version %s, still serving %s: %s",
                    target.name,
                    self._served_name() or "nothing",
                    err,
                    extra={"event": "index_refused", "index_version": target.name},
                )
                self._notify()
                return ReloadOutcome(self._served_name(), False, self.refused)
            self.current = version
            self.refused, self._refused_path = None, None
            log.info(
                "serving index version %s (%d vectors, %s)",
                version.name,
                version.manifest.count,
                version.manifest.factory,
                extra={"event": "index_loaded", "index_version": version.name},
            )
            self._notify()
            return ReloadOutcome(version.name, True, None)

    def watch(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        """Poll CURRENT every `interval_s` in a background thread until `stop` is set."""

        def loop() -> None:
            while not stop.wait(interval_s):
                self.reload()

        thread = threading.Thread(target=loop, name="index-watch", daemon=True)
        thread.start()
        return thread

    def _served_name(self) -> str | None:
        return self.current.name if self.current is not None else None

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change(self.current, self.refused)


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
