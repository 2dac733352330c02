"""Faults: builds killed mid-publish while a server serves, and full disks during embed and
build. Each must fail cleanly, keep the served index serving, and lose nothing."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.synthetic import write_synthetic_shards
from clipsearch.checksum import file_sha256
from clipsearch.client import SearchClient, TextQuery
from clipsearch.collection.manifest import FileKind, read_manifest
from clipsearch.index.manifest import current_version
from clipsearch.index.publish import list_versions
from clipsearch.index.version import IndexVersion
from clipsearch.server.app import RunningServer
from tests.conftest import TINY, make_collection
from tests.served import ServedCollection
from tests.synthetic import clustered_vectors

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "clipsearch.cli.main", "--log-level", "WARNING"]


def file_size_limit(limit: int) -> Callable[[], None]:
    """A child-process hook: no file may grow past `limit` bytes, as on a full disk."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_during_embed_fails_cleanly_and_a_rerun_completes(
    tmp_path: Path, textile_paths: list[Path]
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:80])
    out = tmp_path / "shards"
    # Decoding in-process: a file size limit would also cap the shared memory of workers.
    command = [*CLI, "embed", str(source), "--out", str(out), "--model", TINY,
               "--pretrained", "none", "--shard-size", "16", "--workers", "0",
               "--quiet"]  # fmt: skip
    full = subprocess.run(
        command, preexec_fn=file_size_limit(6_000), capture_output=True, text=True, check=False
    )
    assert full.returncode == 1
    assert "out of disk space" in full.stderr and "Traceback" not in full.stderr

    manifest = read_manifest(out)
    listed = manifest.files if manifest else []
    for entry in listed:  # what was committed is whole
        assert file_sha256(out / entry.file) == entry.sha256

    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    manifest = read_manifest(out)
    assert manifest is not None
    uris = [
        uri
        for entry in manifest.files_of(FileKind.EMBEDDINGS)
        for uri in pq.read_table(out / entry.file, columns=["uri"]).column("uri").to_pylist()
    ]
    assert sorted(uris) == sorted(str(p) for p in source.rglob("*.jpg"))  # once each


def test_a_decode_worker_that_cannot_hand_over_fails_the_job_instead_of_hanging(
    tmp_path: Path, textile_paths: list[Path]
) -> None:
    """Workers pass batches through /dev/shm; when that is full (here: a file size limit),
    no batch ever arrives. The job must fail with a clear message, not wait forever."""
    source = make_collection(tmp_path / "src", textile_paths[:40])
    command = [*CLI, "embed", str(source), "--out", str(tmp_path / "shards"), "--model", TINY,
               "--pretrained", "none", "--workers", "1", "--worker-timeout", "5",
               "--quiet"]  # fmt: skip
    stalled = subprocess.run(
        command, preexec_fn=file_size_limit(6_000), capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert stalled.returncode == 1
    assert "no decoded batch arrived for 5 s" in stalled.stderr


def test_full_disk_during_build_publishes_nothing(
    tmp_path: Path, served_collection: ServedCollection
) -> None:
    index = served_collection.copy_index(tmp_path / "index")
    before = (current_version(index), list_versions(index))
    command = [*CLI, "build", str(served_collection.shards), "--out", str(index)]
    full = subprocess.run(
        command, preexec_fn=file_size_limit(4_000), capture_output=True, text=True, check=False
    )
    assert full.returncode == 1
    assert "out of disk space" in full.stderr and "Traceback" not in full.stderr
    assert (current_version(index), list_versions(index)) == before
    assert before[0] is not None
    IndexVersion(before[0])  # still loads, checksums and all
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert len(list_versions(index)) == len(before[1]) + 1
    assert not list(index.glob(".building-*"))


def test_builds_killed_at_random_moments_never_disturb_the_server(
    tmp_path: Path,
    served_collection: ServedCollection,
    start_server: Callable[..., RunningServer],
) -> None:
    """SIGKILL a build of 60k vectors at random moments (training, adding, measuring,
    publishing) while a server serves the index: it must answer throughout, and every
    version CURRENT names must load."""
    shards = tmp_path / "shards"
    fmt = read_manifest(served_collection.shards).embedding  # type: ignore[union-attr]
    write_synthetic_shards(shards, clustered_vectors(60_000, fmt.dim), 20_000, fmt=fmt)
    index = served_collection.copy_index(tmp_path / "index")
    server = start_server(index, reload_interval_s=0.05)
    command = [*CLI, "build", str(shards), "--out", str(index), "--eval-queries", "200"]
    rng = np.random.default_rng(11)
    with SearchClient(f"127.0.0.1:{server.port}") as client:
        started = time.monotonic()
        subprocess.run(command, check=True, capture_output=True)
        duration = time.monotonic() - started
        kills = 0
        for _ in range(6):
            build = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
            moment = time.monotonic() + float(rng.uniform(0.3, duration))
            while time.monotonic() < moment and build.poll() is None:
                assert client.search(TextQuery("during a build")).hits
            if build.poll() is None:
                os.killpg(build.pid, signal.SIGKILL)
                kills += 1
            build.wait()
            served = current_version(index)
            assert served is not None
            IndexVersion(served)  # whatever CURRENT names is whole
            assert client.search(TextQuery("after a kill")).hits
        assert kills >= 3, f"builds finished before the kill too often ({kills} kills)"
        subprocess.run(command, check=True, capture_output=True)
        newest = list_versions(index)[-1]
        deadline = time.monotonic() + 10
        while client.index_info().index_version != newest:
            assert time.monotonic() < deadline, "the server never picked up the new version"
            time.sleep(0.05)
        assert client.search(TextQuery("after")).index_version == newest
