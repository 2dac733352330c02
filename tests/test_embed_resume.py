"""Killing `clipsearch embed` with SIGKILL at random moments never loses or duplicates an image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clipsearch.checksum import file_sha256
from clipsearch.collection.manifest import FileKind, read_manifest
from tests.conftest import TINY, make_collection


def embed_command(source: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "clipsearch.cli.main", "--log-level", "WARNING", "embed",
        str(source), "--out", str(out), "--model", TINY, "--pretrained", "none",
        "--shard-size", "8", "--batch-size", "4", "--workers", "1", "--quiet",
    ]  # fmt: skip


def committed_shards(out: Path) -> int:
    manifest = read_manifest(out) if (out / "manifest.json").exists() else None
    return len(manifest.files_of(FileKind.EMBEDDINGS)) if manifest else 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_every_image_exactly_once(
    tmp_path: Path, textile_paths: list[Path]
) -> None:
    images = textile_paths[:400]
    source = make_collection(tmp_path / "src", images)
    out = tmp_path / "shards"
    rng = np.random.default_rng(7)
    kills = 0
    for _ in range(5):
        before = committed_shards(out)
        process = subprocess.Popen(embed_command(source, out), start_new_session=True)
        # Kill mid-work: once this run has committed a shard, at a random instant after.
        deadline = time.monotonic() + 60
        while committed_shards(out) == before and process.poll() is None:
            assert time.monotonic() < deadline, "no progress within a minute"
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        if process.poll() is not None:
            break  # it finished before this kill
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills >= 3, "the job finished too fast to be interrupted: make it larger"

    finished = subprocess.run(
        embed_command(source, out), capture_output=True, text=True, check=False
    )
    assert finished.returncode == 0, finished.stderr

    manifest = read_manifest(out)
    assert manifest is not None
    uris: list[str] = []
    for entry in manifest.files_of(FileKind.EMBEDDINGS):
        assert file_sha256(out / entry.file) == entry.sha256
        uris += pq.read_table(out / entry.file, columns=["uri"]).column("uri").to_pylist()
    assert len(uris) == len(set(uris)), "an image was embedded twice"
    expected = {str(p) for p in source.rglob("*.jpg")}
    assert set(uris) == expected, "an image is missing"
    assert not list(out.glob(".tmp-*"))
    on_disk = {p.name for p in out.glob("*.parquet")}
    assert on_disk == {f.file for f in manifest.files}, "an uncommitted shard is visible"


def _vectors_by_id(out: Path) -> dict[int, bytes]:
    manifest = read_manifest(out)
    assert manifest is not None
    found: dict[int, bytes] = {}
    for entry in manifest.files_of(FileKind.EMBEDDINGS):
        table = pq.read_table(out / entry.file, columns=["id", "embedding"])
        for item_id, vector in zip(
            table.column("id").to_pylist(), table.column("embedding").to_pylist(), strict=True
        ):
            assert item_id not in found, "an image was embedded twice"
            found[item_id] = np.asarray(vector, dtype=np.float16).tobytes()
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_stops_cleanly_and_resumes_to_the_uninterrupted_result(
    tmp_path: Path, textile_paths: list[Path], signum: signal.Signals
) -> None:
    source = make_collection(tmp_path / "src", textile_paths[:120])
    whole = tmp_path / "whole"
    assert subprocess.run(embed_command(source, whole), check=False).returncode == 0

    out = tmp_path / "shards"
    process = subprocess.Popen(
        embed_command(source, out), stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while committed_shards(out) == 0 and process.poll() is None:
        assert time.monotonic() < deadline, "no progress within a minute"
        time.sleep(0.05)
    if signum is signal.SIGINT:  # Ctrl-C reaches the whole process group, workers too
        os.killpg(process.pid, signum)
    else:  # kill(1) reaches only the process it names
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "clipsearch: error: interrupted after" in stderr
    assert "hint: run the same command to resume" in stderr
    manifest = read_manifest(out)
    assert manifest is not None
    run = manifest.runs[-1]
    committed = sum(f.rows for f in manifest.files_of(FileKind.EMBEDDINGS))
    assert run.interrupted and run.embedded == committed > 0  # the record tells the truth
    assert committed < 120, "the run finished before the signal: make it larger"

    resumed = subprocess.run(embed_command(source, out), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert _vectors_by_id(out) == _vectors_by_id(whole)
