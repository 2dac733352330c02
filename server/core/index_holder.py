"""The served index version, swapped atomically when the builder publishes a new one.

Requests take `holder.current` once and keep that reference, so in-flight work finishes
on the version it started with; the old version is freed when the last one lets go.
Loading (reading, verifying, a test search) happens in the watcher thread; no request
waits for a load: they read `current` without a lock, and `version_named` only looks
among the versions already loaded. Files verified once are not hashed in full again
while they stay unchanged (clipsearch.index.verified).
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.index.manifest import MANIFEST_FILE, VERSIONS_DIR, IndexManifest, current_version
from clipsearch.index.publish import list_versions
from clipsearch.index.verified import StampStore, Verification
from clipsearch.index.version import IndexLoadError, IndexVersion, LoadTimings

log = logging.getLogger(__name__)

# Versions kept loaded after a swap, for page tokens issued on them. Each holds its index
# in memory, so a token for an older one is refused rather than loaded: loading it would
# make the request wait seconds and hold another copy of the index.
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
class LoadReport:
    """How the served version was loaded: the phases, and what verifying it read."""

    version: str
    timings: LoadTimings
    verification: Verification
    warm_up_s: float  # the test search
    swap_s: float

    @property
    def total_s(self) -> float:
        return self.timings.total_s + self.warm_up_s + self.swap_s


@dataclass(frozen=True)
class _Loaded:
    version: IndexVersion
    warm_up_s: float


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
        self,
        index_dir: Path,
        compatible: CompatibilityCheck,
        events: HolderEvents | None = None,
        stamps: StampStore | None = None,  # None: StampStore.from_environment()
    ) -> None:
        self.index_dir = index_dir
        self._compatible = compatible
        self._events = events
        self._stamps = stamps or StampStore.from_environment()
        # One load at a time (the watcher, ReloadIndex, the start); held for a whole load,
        # so requests never take it.
        self._reload_lock = threading.Lock()
        # Guards `_recent` and the swap: held for microseconds.
        self._lock = threading.Lock()
        self.current: IndexVersion | None = None
        self.last_load: LoadReport | None = None
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
        with self._reload_lock:
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
                loaded = self._load(target)
            except IndexLoadError as err:
                before = self.current
                self._refuse(target, err)
                return ReloadOutcome(self._served_name(), self.current is not before, self.refused)
            self._swap(loaded)
            return ReloadOutcome(loaded.version.name, True, None)

    def _swap(self, loaded: _Loaded) -> None:
        version = loaded.version
        started = time.perf_counter()
        with self._lock:
            self._keep_recent(self.current)
            self.current = version
        swap_s = time.perf_counter() - started
        self.refused, self._refused_path, self.fallback = None, None, False
        report = LoadReport(
            version.name, version.timings, version.verification, loaded.warm_up_s, swap_s
        )
        self.last_load = report
        checked = version.verification
        log.info(
            "serving index version %s (%d vectors, %s), loaded in %.2f s (checksums %.2f s: "
            "%d files hashed, %d trusted from their stamp; index read %.2f s)",
            version.name, version.manifest.count, version.manifest.factory, report.total_s,
            version.timings.verify_s, checked.hashed_files, checked.trusted_files,
            version.timings.index_s,
            extra={
                "event": "index_loaded", "index_version": version.name,
                "load_s": round(report.total_s, 4),
                "phases_s": {k: round(v, 4) for k, v in asdict(version.timings).items()}
                | {"warm_up_s": round(loaded.warm_up_s, 4), "swap_s": round(swap_s, 6)},
                "hashed_bytes": checked.hashed_bytes, "trusted_files": checked.trusted_files,
            },
        )  # fmt: skip
        self._notify()

    def version_named(self, name: str) -> IndexVersion | None:
        """The version of that name if it is loaded: the served one or one served
        recently; None otherwise. Never loads, and never waits for a reload."""
        current = self.current
        if current is not None and current.name == name:
            return current
        with self._lock:
            return self._recent.get(name)

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
                self.current = self._load(path).version
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

    def _load(self, path: Path) -> _Loaded:
        """Load, verify and test a version; IndexLoadError when it must not serve."""
        early = _manifest(path)  # another model's version is refused before any hashing
        if early is not None and (problem := self._compatible(early)) is not None:
            raise IndexLoadError(f"{path}: {problem}")
        version = IndexVersion(path, self._stamps)
        if (problem := self._compatible(version.manifest)) is not None:
            raise IndexLoadError(f"{path}: {problem}")
        started = time.perf_counter()
        _warm_up(version)
        return _Loaded(version, time.perf_counter() - started)

    def _served_name(self) -> str | None:
        return self.current.name if self.current is not None else None

    def _notify(self) -> None:
        if self._events is not None:
            self._events.served(self.current, self.refused, self.fallback)


def _manifest(path: Path) -> IndexManifest | None:
    """The manifest, or None when it cannot be read (IndexVersion says why)."""
    try:
        return IndexManifest.from_json((path / MANIFEST_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
