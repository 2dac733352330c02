"""`make bench-gpu` (bench/gpu.py): says so and exits 0 without CUDA; its CPU smoke mode runs
every row end to end (encoder, embed, serve) and fills the whole table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROWS = ("encoder, ", "encoder, ", "encoder, ", "clipsearch embed", "clipsearch serve")


def run_bench(*args: str, hide_cuda: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if hide_cuda else None
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_without_cuda_it_says_so_and_exits_0() -> None:
    result = run_bench(hide_cuda=True)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device on this host" in result.stdout
    assert "--smoke" in result.stdout  # and how to run the CPU mode
    assert "| what |" not in result.stdout  # nothing measured


@pytest.mark.slow
def test_smoke_runs_every_row_end_to_end() -> None:
    result = run_bench("--smoke")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    table = result.stdout.split("## bench-gpu on", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]
    assert len(rows) == len(ROWS), table
    for row, start in zip(rows, ROWS, strict=True):
        what, measured, reference = (cell.strip() for cell in row.strip("|").split(" | "))
        assert what.startswith(start), row
        assert measured[0].isdigit(), row  # a figure, not "exited with status ..."
        assert " of " in reference, row  # a ratio to its reference, same run
    assert "Physical limit:" in table and "GFLOP per 224x224 image" in table
