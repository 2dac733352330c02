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
