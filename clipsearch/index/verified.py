"""Verifying a version's files against its manifest's checksums, in full once per file.

Hashing every file at every load grows with the index (7.7 GB of vectors at 5M x 768),
so after a file matches its checksum the server records a stamp for it on this host: its
identity (device, inode), size, mtime and ctime, the digest it matched, and a digest of
its first and last SAMPLE_BYTES. A later load that finds the file's stat unchanged and
its head and tail as recorded trusts the digest instead of hashing the file again.

What is still caught before a version serves, stamp or not:
- a missing file, or a manifest that names another digest than the one stamped;
- any change made through the file system since the stamp: a write (ctime moves even
  when mtime is put back), truncation or growth, replacement (rename, copy, restore
  from backup: another inode), a copy of the version in another folder (stamps are kept
  per folder);
- damage to the first or last SAMPLE_BYTES of a file.
What is not: damage that bypasses the file system (decay of the medium, writes to the
raw block device) in the middle of a file that was stamped before. `rm -r` the stamp
store (StampStore.from_environment) to hash every version in full at its next load.

The stamps live in a cache folder of this host, never in the index folder: the server
only reads the index (it may be a read-only volume), and device numbers mean nothing
on another host.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clipsearch.atomic import write_text_atomically
from clipsearch.errors import ClipsearchError

log = logging.getLogger(__name__)

STAMP_FORMAT = "clipsearch-verified/1"
STORE_VAR = "CLIPSEARCH_VERIFIED_DIR"
SAMPLE_BYTES = 64 << 10
_BLOCK = 1 << 20
# A file changed this shortly before it was hashed could change again within the same
# timestamp tick without its stat showing it (git's "racily clean" files), so it is not
# stamped: the next load hashes it again. 2 s covers coarse file-system clocks and some
# clock skew to a network file server.
SETTLE_S = 2.0


class DamagedFileError(ClipsearchError):
    """A file of a version is missing or does not match its checksum."""


@dataclass(frozen=True)
class FileIdentity:
    """What changes when a file is written, truncated, replaced or copied."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int  # set by the kernel on any change; utime cannot put it back

    @staticmethod
    def of(path: Path) -> FileIdentity:
        st = path.stat()
        return FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class FileStamp:
    identity: FileIdentity
    sha256: str  # the manifest's digest, which the whole file matched
    sample: str  # sha256 of its first and last SAMPLE_BYTES


@dataclass(frozen=True)
class Verification:
    """What verifying a version read: files hashed in full, and files trusted from
    their stamp (only their head and tail read)."""

    hashed_files: int = 0
    hashed_bytes: int = 0
    trusted_files: int = 0
    sampled_bytes: int = 0
    stamped: bool = False  # every file has a stamp now (recorded or still valid)


@dataclass
class _Tally:
    hashed_files: int = 0
    hashed_bytes: int = 0
    trusted_files: int = 0
    sampled_bytes: int = 0
    stamps: dict[str, FileStamp] = field(default_factory=dict)


class StampStore:
    """Stamps of verified versions, one small JSON file per version folder."""

    def __init__(self, folder: Path, settle_s: float = SETTLE_S) -> None:
        self.folder = folder
        self.settle_s = settle_s

    @staticmethod
    def from_environment() -> StampStore:
        """$CLIPSEARCH_VERIFIED_DIR, else clipsearch/verified in the user's cache."""
        if chosen := os.environ.get(STORE_VAR):
            return StampStore(Path(chosen))
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return StampStore(Path(cache) / "clipsearch" / "verified")

    def _path(self, version: Path) -> Path:
        key = hashlib.sha256(str(version.resolve()).encode()).hexdigest()[:16]
        return self.folder / f"{version.name}-{key}.json"

    def read(self, version: Path) -> dict[str, FileStamp]:
        """The stamps recorded for this folder; none when there is no usable record."""
        try:
            raw = json.loads(self._path(version).read_text())
            if raw["format"] != STAMP_FORMAT or raw["version"] != str(version.resolve()):
                return {}
            return {
                name: FileStamp(FileIdentity(**s["identity"]), s["sha256"], s["sample"])
                for name, s in raw["files"].items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as err:  # rewritten at this load
            log.warning("ignoring the unreadable verification stamp of %s: %s", version, err)
            return {}

    def write(self, version: Path, stamps: dict[str, FileStamp]) -> bool:
        """Record the stamps (atomically); False, logged, when the store is not writable:
        then the next load hashes the version in full again."""
        record = {
            "format": STAMP_FORMAT,
            "version": str(version.resolve()),
            "files": {name: asdict(stamp) for name, stamp in sorted(stamps.items())},
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._forget_removed_versions()
            write_text_atomically(self._path(version), json.dumps(record, indent=1) + "\n")
        except OSError as err:
            log.warning(
                "cannot record that %s was verified (%s): it will be hashed in full at its "
                "next load; set %s to a writable folder", version, err, STORE_VAR,
            )  # fmt: skip
            return False
        return True

    def _forget_removed_versions(self) -> None:
        """Delete the stamps of folders that no longer exist (pruned versions)."""
        for path in self.folder.glob("*.json"):
            try:
                if not Path(json.loads(path.read_text())["version"]).exists():
                    path.unlink(missing_ok=True)
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)


def verify_files(
    folder: Path, expected: dict[str, str], store: StampStore | None = None
) -> Verification:
    """Refuses (DamagedFileError) a version whose files were truncated, bit-flipped or
    replaced since its build. With a store, files stamped as verified and unchanged
    since are trusted without hashing them in full, and the others are stamped."""
    stamps = store.read(folder) if store is not None else {}
    tally = _Tally()
    for name, digest in expected.items():
        _verify_file(folder / name, digest, stamps.get(name), store, tally)
    stamped = len(tally.stamps) == len(expected)
    if store is not None and tally.stamps and tally.stamps != stamps:
        stamped = store.write(folder, tally.stamps) and stamped
    return Verification(
        tally.hashed_files, tally.hashed_bytes, tally.trusted_files, tally.sampled_bytes, stamped
    )


def _verify_file(
    path: Path, digest: str, stamp: FileStamp | None, store: StampStore | None, tally: _Tally
) -> None:
    try:
        identity = FileIdentity.of(path)
    except FileNotFoundError:
        raise DamagedFileError(f"{path.parent}: {path.name} is missing") from None
    if stamp is not None and stamp.identity == identity and stamp.sha256 == digest:
        tally.sampled_bytes += _sampled_size(identity.size)
        if _sample(path, identity.size) == stamp.sample:
            tally.trusted_files += 1
            tally.stamps[path.name] = stamp
            return
    started_ns = time.time_ns()
    if _sha256(path, tally) != digest:
        raise DamagedFileError(f"{path.parent}: {path.name} does not match its checksum (damaged)")
    if store is None:
        return
    # Damage may land after the stat: only a file whose stat held through the hash, and
    # whose last change was well before it, is stamped.
    settled = max(identity.mtime_ns, identity.ctime_ns) < started_ns - store.settle_s * 1e9
    if settled and FileIdentity.of(path) == identity:
        tally.sampled_bytes += _sampled_size(identity.size)
        tally.stamps[path.name] = FileStamp(identity, digest, _sample(path, identity.size))


def _sha256(path: Path, tally: _Tally) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)  # hashlib lets go of the GIL: searches carry on
            tally.hashed_bytes += len(block)
    tally.hashed_files += 1
    return digest.hexdigest()


def _sampled_size(size: int) -> int:
    return min(size, 2 * SAMPLE_BYTES)


def _sample(path: Path, size: int) -> str:
    """sha256 of the first and last SAMPLE_BYTES (the whole file when it is smaller)."""
    with open(path, "rb") as handle:
        head = handle.read(SAMPLE_BYTES)
        handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
        tail = handle.read(SAMPLE_BYTES)
    return hashlib.sha256(head + tail).hexdigest()
