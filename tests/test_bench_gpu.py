"""`make bench-gpu` (bench/gpu.py): says so and exits 0 without CUDA; its CPU smoke mode runs
every row end to end (encoder, embed, serve) and fills the whole table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.encoder_speed import PlainRate, Report, Speed
from bench.gpu import FULL, ChildRun, embed_row, serve_row

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


def speed(kind: str, ours: float, plain: float) -> Speed:
    plain_copies = (PlainRate("fp16", plain * 0.9), PlainRate("bf16", plain))
    return Speed("ViT-L-14", kind, 512, "cuda", "bf16", ours, plain_copies)


def test_encoder_report_round_trips_through_json_and_ratios_take_the_fastest_copy() -> None:
    report = Report((speed("images", 2500.0, 2600.0),), None, 12.5)
    again = Report.from_json(report.to_json())
    assert again == report
    assert again.speeds[0].reference == PlainRate("bf16", 2600.0)
    assert again.speeds[0].ratio == pytest.approx(2500 / 2600)


def test_embed_row_reads_the_pipeline_rate_against_the_encoder_row() -> None:
    lines = (
        "8000 images, ViT-L-14 random init on cuda:0 in torch.bfloat16, batch 256, ...",
        "  t_model       0.45 ms/image  ( 2222.2 images/s)",
        "  clipsearch embed          2000.0 images/s once loaded (1500.0 over the whole run)",
    )
    row = embed_row(ChildRun("embed", lines, 0, 60.0), FULL, speed("images", 2500.0, 2600.0))
    assert row.measured == "2,000 img/s"
    assert "encoder alone 2,500 img/s" in row.reference and "0.80 of it" in row.reference
    assert "own model-alone pass 2,222 img/s, 0.90" in row.reference
    failed = embed_row(ChildRun("embed", lines[:1], 1, 3.0), FULL, None)
    assert failed.measured == "exited with status 1"
    stopped = embed_row(ChildRun("embed", lines, None, 150.0), FULL, None)
    assert stopped.measured == "stopped at its budget (150 s)"


def test_serve_row_reads_the_batched_rows_and_the_encoder_alone_rate() -> None:
    lines = (
        "encoder alone: 3,140.0 texts/s (ViT-L-14 on cuda, tokenise + encode, batches of 256)",
        "mode  clients  QPS  p50 ms  p99 ms  overhead  grpc  queue  encode  search failed",
        "batched  1  150.0  6.5  9.0  0.100  0.50  0.05  4.00  1.00  0",
        "batched  256  2826.0  80.0  120.0  0.400  2.00  20.00  40.00  5.00  3",
    )
    row = serve_row(ChildRun("serve", lines, 0, 90.0), FULL, speed("texts", 3000.0, 900.0))
    assert row.measured == "2,826 queries/s, p50 80.0 ms, failures 3"
    assert "encoder alone 3,140 texts/s (measured by bench.serve_qps); 0.90 of it" in row.reference
    assert "1-client p50 6.5 ms" in row.reference
    without = serve_row(ChildRun("serve", lines[1:], 0, 90.0), FULL, speed("texts", 3000.0, 900.0))
    assert "encoder alone 3,000 texts/s (the texts row, batch 512); 0.94 of it" in without.reference
