"""`make bench-gpu`: the GPU table of issue 18, every row beside its reference, in one run.

    python -m bench.gpu            on a CUDA host (about 4 minutes on an H200, capped at 7.5)
    python -m bench.gpu --smoke    the same rows on CPU at toy sizes, to prove the wiring

Each row runs the benchmark that owns it, as a child process with a time budget (its log
is echoed with a '|' margin; one that fails or runs out of time leaves its cell saying so
and the rest still run):

  encoder   bench.encoder_speed: ViT-L-14 images (batch 512) and texts (256), ViT-g-14 images
            (256), each against a plain half-precision copy of the same tower, same run
  embed     bench.embed_pipeline: `clipsearch embed` end to end on generated 640x480 JPEGs,
            against the encoder alone (the ViT-L-14 image row)
  serve     bench.serve_qps: text search through the server at 1 and 256 clients, default
            flags, against the encoder alone on texts

then the table in markdown and the physical limit: the image tower's FLOPs per image
against the device's measured dense bf16 matrix-product rate. Without CUDA it says so and
exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.encoder_speed import Physical, Report, Speed, describe_physical

# What the rows read from the benchmarks' output (bench.embed_pipeline, bench.serve_qps).
EMBED_RATE = r"clipsearch embed\s+([\d,.]+) images/s"
EMBED_MODEL_RATE = r"t_model .*\(\s*([\d,.]+) images/s\)"
SERVE_ENCODER_ALONE = r"^encoder alone: ([\d,.]+) texts/s"


def serve_cell(clients: int) -> str:
    """bench.serve_qps's batched row at `clients`: mode, clients, QPS, p50 ms, p99 ms, four
    timing columns, one more, failed calls."""
    return rf"^batched\s+{clients}\s+([\d.]+)\s+(\S+)(?:\s+\S+){{6}}\s+(\d+)\s*$"


# The whole run stays under 8 minutes on the GPU host: rows get what is left of this, and
# one left less than MIN_ROW_S is not started.
TOTAL_BUDGET_S = 450.0
MIN_ROW_S = 10.0


@dataclass(frozen=True)
class Plan:
    """What each row runs at: the issue's sizes on CUDA, toy ones for --smoke on CPU."""

    device: str
    large: str
    giant: str
    large_image_batch: int
    giant_image_batch: int
    text_batch: int
    encoder_seconds: float
    embed_images: int
    embed_batch: int
    serve_clients: tuple[int, int]
    serve_client_processes: int
    serve_seconds: float
    serve_vectors: int
    budgets_s: dict[str, float] = field(hash=False)


FULL = Plan(
    device="cuda",
    large="ViT-L-14",
    giant="ViT-g-14",
    large_image_batch=512,
    giant_image_batch=256,
    text_batch=256,
    encoder_seconds=6.0,
    embed_images=8000,
    embed_batch=256,
    serve_clients=(1, 256),
    serve_client_processes=4,  # so the clients' own GIL does not cap the rate
    serve_seconds=6.0,
    serve_vectors=100_000,
    # Caps, about twice what each should take on an H200 (loads and random init included;
    # serve builds a 100k-vector index first). The rows should end in about 4 minutes.
    budgets_s={"large": 120, "giant": 150, "embed": 150, "serve": 180},
)
SMOKE = Plan(
    device="cpu",
    large="clipsearch-tiny",
    giant="clipsearch-tiny",
    large_image_batch=8,
    giant_image_batch=4,
    text_batch=8,
    encoder_seconds=0.5,
    embed_images=32,
    embed_batch=8,
    serve_clients=(1, 4),
    serve_client_processes=1,
    serve_seconds=1.0,
    serve_vectors=2000,
    budgets_s={"large": 60, "giant": 60, "embed": 120, "serve": 120},
)


@dataclass(frozen=True)
class ChildRun:
    """A benchmark run as a child process: its output lines, and how it ended."""

    name: str
    lines: tuple[str, ...]
    returncode: int | None  # None: stopped at its time budget
    seconds: float
    skipped: bool = False

    @property
    def failed(self) -> str | None:
        """Why the row has no figures, or None when the child exited cleanly."""
        if self.skipped:
            return "not run: the whole run's time budget was spent"
        if self.returncode is None:
            return f"stopped at its budget ({self.seconds:.0f} s)"
        if self.returncode != 0:
            return f"exited with status {self.returncode}"
        return None

    def find(self, pattern: str) -> re.Match[str] | None:
        """The last output line matching `pattern`."""
        for line in reversed(self.lines):
            match = re.search(pattern, line)
            if match:
                return match
        return None


@dataclass(frozen=True)
class Row:
    what: str
    measured: str
    reference: str


def run_child(name: str, args: list[str], budget_s: float) -> ChildRun:
    """Run `python -m ...args`, echoing its output live; stop its process group at the budget."""
    if budget_s < MIN_ROW_S:
        return ChildRun(name, (), None, 0.0, skipped=True)
    command = [sys.executable, "-m", *args]
    print(f"\n== {name}: {' '.join(args)}  (budget {budget_s:.0f} s)", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group, so a stop reaches servers and workers too
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    echo = threading.Thread(target=_echo, args=(process, lines), daemon=True)
    echo.start()
    try:
        returncode: int | None = process.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        returncode = None
    _stop_group(process)
    echo.join(timeout=5)
    run = ChildRun(name, tuple(lines), returncode, time.perf_counter() - started)
    print(f"== {name}: {run.failed or 'done'} in {run.seconds:.0f} s", flush=True)
    return run


def _stop_group(process: subprocess.Popen[str]) -> None:
    """End the child's process group: the child at its budget, or what it left behind (a
    server still holding the GPU would skew the next row)."""
    with contextlib.suppress(ProcessLookupError):  # the group had already ended
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _echo(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        print(f"  | {line}", end="", flush=True)


class Budget:
    """Each row gets its own budget, cut to what is left of the whole run's."""

    def __init__(self, total_s: float) -> None:
        self.deadline = time.perf_counter() + total_s

    def for_row(self, row_s: float) -> float:
        return min(row_s, self.deadline - time.perf_counter())


@dataclass(frozen=True)
class EncoderFigures:
    """The encoder rows' measurements; None where a child failed or ran out of time."""

    large_images: Speed | None
    large_texts: Speed | None
    giant_images: Speed | None
    physical: Physical | None


def encoder_rows(plan: Plan, budget: Budget, workdir: Path) -> EncoderFigures:
    """The three encoder rows (one child process per model) and the physical limit."""
    large = encoder_run(plan, budget, workdir, "large", "images,texts", plan.large_image_batch)
    giant = encoder_run(plan, budget, workdir, "giant", "images", plan.giant_image_batch)
    return EncoderFigures(
        _kind(large, "images"),
        _kind(large, "texts"),
        _kind(giant, "images"),
        large.physical if large else None,
    )


def encoder_run(
    plan: Plan, budget: Budget, workdir: Path, key: str, kinds: str, image_batch: int
) -> Report | None:
    model = plan.large if key == "large" else plan.giant
    out = workdir / f"encoder-{key}.json"
    args = [
        "bench.encoder_speed", "--model", model, "--device", plan.device, "--kinds", kinds,
        "--image-batch", str(image_batch), "--text-batch", str(plan.text_batch),
        "--seconds", str(plan.encoder_seconds), "--json", str(out),
    ]  # fmt: skip
    if key == "large":  # the physical limit is quoted for ViT-L-14
        args.append("--physical")
    run = run_child(f"encoder {model}", args, budget.for_row(plan.budgets_s[key]))
    return Report.from_json(out.read_text()) if run.failed is None and out.exists() else None


def _kind(report: Report | None, kind: str) -> Speed | None:
    return next((s for s in report.speeds if s.kind == kind), None) if report else None


def embed_run(plan: Plan, budget: Budget) -> ChildRun:
    args = [
        "bench.embed_pipeline", "--device", plan.device, "--model", plan.large,
        "--batch-size", str(plan.embed_batch), "--images", str(plan.embed_images),
        "--parts", "efficiency",
    ]  # fmt: skip
    return run_child("embed", args, budget.for_row(plan.budgets_s["embed"]))


def serve_run(plan: Plan, budget: Budget, workdir: Path) -> ChildRun:
    args = [
        "bench.serve_qps", "--workdir", str(workdir / "serve"), "--device", plan.device,
        "--model", plan.large,
        "--clients", ",".join(map(str, plan.serve_clients)), "--modes", "batched",
        "--client-processes", str(plan.serve_client_processes),
        "--encoder-alone",
        "--seconds", str(plan.serve_seconds), "--vectors", str(plan.serve_vectors),
    ]  # fmt: skip
    return run_child("serve", args, budget.for_row(plan.budgets_s["serve"]))


def _per_s(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def encoder_row(speed: Speed | None, what: str, unit: str) -> Row:
    if speed is None:
        return Row(what, "not measured (see its log above)", "")
    plain = ", ".join(f"{p.dtype} {_per_s(p.per_s)}" for p in speed.plain)
    # Ours cuts a text batch to its longest query; open_clip's encode_text runs all 77 tokens.
    context = " at the full 77-token context" if speed.kind == "texts" else ""
    return Row(
        what,
        f"{_per_s(speed.ours_per_s)} {unit} ({speed.ours_dtype})",
        f"plain copy{context}: {plain} {unit}; ours {speed.ratio:.2f} of the best",
    )


def embed_row(run: ChildRun, plan: Plan, encoder: Speed | None) -> Row:
    what = (
        f"clipsearch embed, {plan.embed_images:,} JPEGs of 640x480, {plan.large}, "
        f"batch {plan.embed_batch}, default workers"
    )
    match = run.find(EMBED_RATE)
    if run.failed or match is None:
        return Row(what, run.failed or "no rate in its output (see its log above)", "")
    rate = _number(match.group(1))
    if encoder is None:
        return Row(what, f"{_per_s(rate)} img/s", "encoder alone not measured")
    reference = (
        f"encoder alone {_per_s(encoder.ours_per_s)} img/s (the images row, batch "
        f"{encoder.batch}); {rate / encoder.ours_per_s:.2f} of it (target >= 0.8)"
    )
    own = run.find(EMBED_MODEL_RATE)
    if own:  # the embed benchmark's own model-alone figure, at the pipeline's batch size
        alone = _number(own.group(1))
        reference += f"; its own model-alone pass {_per_s(alone)} img/s, {rate / alone:.2f}"
    return Row(what, f"{_per_s(rate)} img/s", reference)


def serve_row(run: ChildRun, plan: Plan, encoder: Speed | None) -> Row:
    few, many = plan.serve_clients
    what = (
        f"clipsearch serve, text search, {many} concurrent clients from "
        f"{plan.serve_client_processes} client processes, {plan.large}, default flags"
    )
    crowd, alone = run.find(serve_cell(many)), run.find(serve_cell(few))
    if run.failed or crowd is None:
        return Row(what, run.failed or "no figures in its output (see its log above)", "")
    qps, p50 = _number(crowd.group(1)), _number(crowd.group(2))
    failures = crowd.group(3)
    reference_match = run.find(SERVE_ENCODER_ALONE)
    if reference_match:
        reference, source = _number(reference_match.group(1)), "measured by bench.serve_qps"
    elif encoder is not None:
        reference, source = encoder.ours_per_s, f"the texts row, batch {encoder.batch}"
    else:
        return Row(what, f"{_per_s(qps)} queries/s, p50 {p50:.1f} ms", "encoder not measured")
    single = f"{_number(alone.group(2)):.1f} ms" if alone else "not found"
    return Row(
        what,
        f"{_per_s(qps)} queries/s, p50 {p50:.1f} ms, failures {failures}",
        f"encoder alone {_per_s(reference)} texts/s ({source}); {qps / reference:.2f} of it "
        f"(target >= 0.8); {few}-client p50 {single} (target <= 10 ms)",
    )


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def markdown(rows: list[Row]) -> str:
    lines = ["| what | measured | reference, same run |", "| --- | --- | --- |"]
    lines += [f"| {row.what} | {row.measured} | {row.reference} |" for row in rows]
    return "\n".join(lines)


def run_all(plan: Plan) -> str:
    """Every row, then the table and the physical limit, as markdown."""
    budget = Budget(TOTAL_BUDGET_S)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        enc = encoder_rows(plan, budget, Path(tmp))
        embed = embed_run(plan, budget)
        serve = serve_run(plan, budget, Path(tmp))
    rows = [
        encoder_row(
            enc.large_images,
            f"encoder, {plan.large} images, batch {plan.large_image_batch}",
            "img/s",
        ),
        encoder_row(
            enc.giant_images,
            f"encoder, {plan.giant} images, batch {plan.giant_image_batch}",
            "img/s",
        ),
        encoder_row(
            enc.large_texts, f"encoder, {plan.large} texts, batch {plan.text_batch}", "texts/s"
        ),
        embed_row(embed, plan, enc.large_images),
        serve_row(serve, plan, enc.large_texts),
    ]
    text = markdown(rows)
    if enc.physical:
        text += "\n\n" + limit_line(enc.physical, enc.large_images)
    return text


def limit_line(physical: Physical, measured: Speed | None) -> str:
    line = f"Physical limit: {describe_physical(physical)}"
    if measured is not None:
        line += f"; ours reaches {measured.ours_per_s / physical.images_per_s:.2f} of it"
    return line + "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="every row on CPU at toy sizes (checks the wiring)"
    )
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(
            f"bench-gpu: no CUDA device on this host (torch {torch.__version__}): nothing "
            "measured. `python -m bench.gpu --smoke` runs the same rows on CPU at toy sizes."
        )
        return 0
    plan = SMOKE if args.smoke else FULL
    started = time.perf_counter()
    device = torch.cuda.get_device_name() if plan.device == "cuda" else "CPU (smoke sizes)"
    table = run_all(plan)
    print(f"\n## bench-gpu on {device}, {time.perf_counter() - started:.0f} s\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
