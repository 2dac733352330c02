"""What a reload costs: files verified once are not hashed in full again, changed files
are, damaged ones are still refused; no request waits for a load; a hot reload of a
larger index under load fails no request."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from bench.synthetic import ClipLikeSpace, write_synthetic_shards
from clipsearch.client import RpcError, SearchClient, TextQuery, VectorQuery
from clipsearch.collection.manifest import EmbeddingFormat, VectorDtype
from clipsearch.encoder import ClipEncoder
from clipsearch.index import verified
from clipsearch.index.manifest import (
    MANIFEST_FILE,
    VECTORS_FILE,
    IndexManifest,
    current_version,
)
from clipsearch.index.publish import switch_current
from clipsearch.index.verified import SAMPLE_BYTES, StampStore
from clipsearch.index.version import IndexLoadError, IndexVersion
from clipsearch.indexer import BuildConfig, run_build
from clipsearch.server.app import RunningServer
from clipsearch.server.core.index_holder import IndexHolder
from tests.served import ServedCollection

SETTLE_S = 0.05  # the stores here trust files changed this long before their hash


@pytest.fixture
def version(tmp_path: Path, served_collection: ServedCollection) -> Path:
    """A version of one's own whose files are old enough to be stamped."""
    index = served_collection.copy_index(tmp_path / "index")
    path = current_version(index)
    assert path is not None
    time.sleep(SETTLE_S * 2)
    return path


@pytest.fixture
def store(tmp_path: Path) -> StampStore:
    return StampStore(tmp_path / "stamps", settle_s=SETTLE_S)


@pytest.fixture
def full_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files hashed in full, as the hashing function sees them."""
    seen: list[str] = []
    whole = verified._sha256

    def counting(path: Path, tally: verified._Tally) -> str:
        seen.append(path.name)
        return whole(path, tally)

    monkeypatch.setattr(verified, "_sha256", counting)
    return seen


def _files(version: Path) -> dict[str, int]:
    manifest = IndexManifest.from_json((version / MANIFEST_FILE).read_text())
    return {name: (version / name).stat().st_size for name in manifest.files}


def test_a_verified_version_loads_without_hashing_its_files_in_full(
    version: Path, store: StampStore, full_hashes: list[str]
) -> None:
    files = _files(version)
    first = IndexVersion(version, store).verification
    assert sorted(full_hashes) == sorted(files)
    assert (first.hashed_files, first.hashed_bytes) == (len(files), sum(files.values()))
    assert first.stamped

    full_hashes.clear()
    again = IndexVersion(version, store).verification
    assert full_hashes == []
    assert (again.hashed_files, again.hashed_bytes, again.trusted_files) == (0, 0, len(files))
    assert again.sampled_bytes == sum(min(size, 2 * SAMPLE_BYTES) for size in files.values())
    assert again.stamped

    # Without a store (the build, `clipsearch versions`) every load hashes everything.
    full_hashes.clear()
    assert IndexVersion(version).verification.hashed_bytes == sum(files.values())


def test_a_file_changed_too_recently_is_not_stamped(
    tmp_path: Path, served_collection: ServedCollection, full_hashes: list[str]
) -> None:
    """A file changed just before its hash may change again within the same timestamp
    tick unseen: it is hashed in full again at the next load."""
    index = served_collection.copy_index(tmp_path / "index")
    path = current_version(index)
    assert path is not None
    store = StampStore(tmp_path / "stamps", settle_s=3600)
    assert not IndexVersion(path, store).verification.stamped
    full_hashes.clear()
    assert IndexVersion(path, store).verification.hashed_files == len(_files(path))


def _flip_in_place_keeping_mtime(path: Path) -> None:
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(before.st_size // 2)  # the middle: the head and tail samples miss it
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 1]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ctime still moves


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 1)


def _replace_with_a_damaged_copy(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    spare = path.with_name("spare")
    spare.write_bytes(bytes(data))
    shutil.copystat(path, spare)  # same size and mtime, another inode
    spare.replace(path)


@pytest.mark.parametrize(
    "damage",
    [_flip_in_place_keeping_mtime, _truncate, _replace_with_a_damaged_copy],
    ids=["bit flipped in place, mtime put back", "truncated", "replaced by a damaged copy"],
)
def test_a_file_damaged_after_verification_is_hashed_in_full_and_refused(
    version: Path,
    store: StampStore,
    full_hashes: list[str],
    damage: Callable[[Path], None],
) -> None:
    IndexVersion(version, store)
    damage(version / VECTORS_FILE)
    full_hashes.clear()
    with pytest.raises(IndexLoadError, match=r"vectors\.npy does not match its checksum"):
        IndexVersion(version, store)
    assert full_hashes == [VECTORS_FILE]  # the others are still trusted


def test_a_touched_file_is_hashed_in_full_once_then_trusted_again(
    version: Path, store: StampStore, full_hashes: list[str]
) -> None:
    IndexVersion(version, store)
    os.utime(version / VECTORS_FILE)
    time.sleep(SETTLE_S * 2)
    full_hashes.clear()
    assert IndexVersion(version, store).verification.hashed_files == 1
    assert full_hashes == [VECTORS_FILE]
    full_hashes.clear()
    IndexVersion(version, store)
    assert full_hashes == []


def test_a_stamp_whose_head_and_tail_differ_from_the_file_is_not_trusted(
    version: Path, store: StampStore, full_hashes: list[str]
) -> None:
    """Stands for damage the stat cannot see: the sampled blocks tell, and the file is
    hashed in full (here it is intact, so it loads)."""
    IndexVersion(version, store)
    (record,) = store.folder.glob("*.json")
    raw = json.loads(record.read_text())
    raw["files"][VECTORS_FILE]["sample"] = "0" * 64
    record.write_text(json.dumps(raw))
    full_hashes.clear()
    IndexVersion(version, store)
    assert full_hashes == [VECTORS_FILE]


def test_a_copy_of_a_verified_version_is_hashed_in_full(
    version: Path, store: StampStore, full_hashes: list[str]
) -> None:
    IndexVersion(version, store)
    copy = version.with_name("v000002")
    shutil.copytree(version, copy)  # copy2 keeps mtimes; the folder and inodes differ
    time.sleep(SETTLE_S * 2)
    full_hashes.clear()
    assert IndexVersion(copy, store).verification.hashed_files == len(_files(copy))
    full_hashes.clear()
    IndexVersion(version, store)  # the original's stamp is its own
    assert full_hashes == []


def test_stamps_of_removed_versions_are_forgotten(version: Path, store: StampStore) -> None:
    copy = version.with_name("v000002")
    shutil.copytree(version, copy)
    time.sleep(SETTLE_S * 2)
    IndexVersion(copy, store)
    shutil.rmtree(copy)
    IndexVersion(version, store)  # writing its stamp sweeps the store
    assert [p.name.split("-")[0] for p in store.folder.glob("*.json")] == [version.name]


def test_an_unwritable_store_still_loads_and_hashes_every_time(
    version: Path, tmp_path: Path, full_hashes: list[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    store = StampStore(blocker / "stamps", settle_s=SETTLE_S)
    assert not IndexVersion(version, store).verification.stamped
    full_hashes.clear()
    IndexVersion(version, store)
    assert len(full_hashes) == len(_files(version))


def _copy_as(version: Path, name: str) -> Path:
    """The same files published again under another version name."""
    copy = version.parent / name
    shutil.copytree(version, copy)
    manifest = IndexManifest.from_json((copy / MANIFEST_FILE).read_text())
    (copy / MANIFEST_FILE).write_text(replace(manifest, version=name).to_json())
    return copy


def test_requests_never_wait_for_a_load(
    tmp_path: Path, served_collection: ServedCollection
) -> None:
    """While the watcher loads a new version (held here inside its model check), the
    served version answers and page-token lookups return at once; a version that is
    not loaded is not loaded for a request."""
    index = served_collection.copy_index(tmp_path / "index")
    served = current_version(index)
    assert served is not None
    newer = _copy_as(served, "v000002")
    entered, release = threading.Event(), threading.Event()

    def compatible(manifest: IndexManifest) -> str | None:
        if threading.current_thread().name == "reloader":
            entered.set()
            release.wait(30)
        return None

    holder = IndexHolder(index, compatible, stamps=StampStore(tmp_path / "stamps"))
    holder.reload()
    first = holder.current
    assert first is not None
    switch_current(index, newer.name)
    reloader = threading.Thread(target=holder.reload, name="reloader")
    reloader.start()
    try:
        assert entered.wait(30)
        assert holder.current is first  # still served
        assert holder.version_named(first.name) is first
        assert holder.version_named("v000099") is None
        assert holder.version_named(newer.name) is None  # loading, not served yet
        assert reloader.is_alive()  # all of the above ran while the load was held
    finally:
        release.set()
        reloader.join()
    assert holder.current is not None and holder.current.path == newer
    assert holder.version_named(first.name) is first  # kept for its page tokens


# --- a hot reload of a larger index under load ------------------------------------------

ROWS, CLIENTS = 200_000, 4


@dataclass
class _Answers:
    versions: Counter[str]
    after_switch: Counter[str]  # answers to requests sent after CURRENT changed
    errors: list[str]


def _search(
    target: str, stop: threading.Event, switched: threading.Event, queries: np.ndarray,
    answers: _Answers, lock: threading.Lock,
) -> None:  # fmt: skip
    with SearchClient(target, timeout_s=60) as client:
        n = 0
        while not stop.is_set():
            late = switched.is_set()
            query = (
                TextQuery(f"query {n}") if n % 4 == 0 else VectorQuery(queries[n % len(queries)])
            )
            try:
                version = client.search(query, top_k=10).index_version
            except RpcError as err:
                with lock:
                    answers.errors.append(str(err))
            else:
                with lock:
                    answers.versions[version] += 1
                    if late:
                        answers.after_switch[version] += 1
            n += 1


@pytest.mark.slow
def test_a_hot_reload_of_a_larger_index_under_load_fails_no_request(
    tmp_path: Path,
    tiny_encoder: ClipEncoder,
    start_server: Callable[..., RunningServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    info = tiny_encoder.info
    fmt = EmbeddingFormat(
        info.model, info.pretrained, info.dim, info.preprocess, VectorDtype.FLOAT16, False
    )
    space = ClipLikeSpace(info.dim, seed=0)
    write_synthetic_shards(
        tmp_path / "shards", space.images(ROWS, seed=0), shard_size=50_000, fmt=fmt
    )
    index = tmp_path / "index"
    run_build(BuildConfig(tmp_path / "shards", index, eval_queries=20))
    old = current_version(index)
    assert old is not None
    new = _copy_as(old, "v000002")  # the same rows, published as a new version

    monkeypatch.setenv(verified.STORE_VAR, str(tmp_path / "stamps"))
    server = start_server(index, reload_interval_s=0.05)
    holder = server.service.holder
    answers, lock = _Answers(Counter(), Counter(), []), threading.Lock()
    stop, switched = threading.Event(), threading.Event()
    queries = space.images(64, seed=1)
    clients = [
        threading.Thread(
            target=_search,
            args=(f"127.0.0.1:{server.port}", stop, switched, queries, answers, lock),
        )
        for _ in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    try:
        while sum(answers.versions.values()) < 20:  # every client is under way
            time.sleep(0.01)
        switch_current(index, new.name)
        switched.set()
        deadline = time.monotonic() + 60
        while answers.versions[new.name] < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert answers.errors == []
    assert answers.versions[new.name] >= 20, answers
    # The old version kept answering after CURRENT changed, while the new one loaded.
    assert answers.after_switch[old.name] > 0, answers
    report = holder.last_load
    assert report is not None and report.version == new.name
    assert report.verification.hashed_bytes >= ROWS * info.dim * 2  # a new version: in full
