"""How fast `clipsearch import` turns clip-retrieval output into shards, next to what
`clipsearch embed` would take to make the same collection from the images.

Run: .venv/bin/python -m bench.import_rate  (about 10 minutes on 2 CPU cores)

Measured, side by side in one run:
  import   `clipsearch import` (the CLI, in a subprocess: wall time, peak RSS) over
           clip-retrieval-shaped output generated here: --vectors 768-d float16 unit
           vectors in img_emb/img_emb_N.npy (--partition-rows a file; clip-retrieval's
           default is 1,000,000) and metadata/metadata_N.parquet with image_path, caption,
           url, width, height and similarity, as LAION-style runs write them
  rerun    the same command again: nothing changed, nothing imported
  embed    `clipsearch embed` (the CLI) over real JPEGs of conformal-clip-data with each
           --embed-models model (random init, on this CPU; ViT-L-14 makes the 768-d
           vectors imported here, ViT-B-32 is the fastest common one)
Extrapolated, and labelled so: embed's time for --vectors images at its measured rate.
The images are 250x250 JPEGs, so decoding is cheap; larger photos only slow embed down.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import conformal_clip_data
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DIM = 768  # ViT-L-14, the default model's dimension


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_gb: float
    stdout: str


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--embed-models",
        default="ViT-B-32:300,ViT-L-14:48",
        help="MODEL:IMAGES pairs: the images each model embeds (ViT-L-14 is slow on a CPU)",
    )
    parser.add_argument("--keep", type=Path, help="work here and keep the files")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="clipsearch-bench-import-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        run(root, args)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def run(root: Path, args: argparse.Namespace) -> None:
    source = root / "clip-retrieval-out"
    started = time.perf_counter()
    write_source(source, args.vectors, args.partition_rows)
    size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    print(
        f"source: {args.vectors:,} x {DIM}-d float16 vectors + metadata in "
        f"{-(-args.vectors // args.partition_rows)} partition(s), {size / 1e9:.2f} GB "
        f"(generated in {time.perf_counter() - started:.0f} s)"
    )
    shards = root / "shards"
    model = ["--model", "ViT-L-14", "--pretrained", "laion2b_s32b_b82k"]
    command = [*clipsearch(), "import", str(source), "--out", str(shards), *model, "--quiet"]
    first = measure(command)
    rerun = measure(command)
    written = sum(p.stat().st_size for p in shards.glob("*.parquet"))
    rates = []
    for pair in args.embed_models.split(","):
        name, count = pair.split(":")
        rates.append((name, int(count), embed_rate(root, name, int(count))))

    n = args.vectors
    print()
    print("measured")
    print(
        f"  import  {n:,} vectors: {first.seconds:.1f} s wall, {n / first.seconds:,.0f} "
        f"vectors/s, peak RSS {first.peak_rss_gb:.2f} GB; shards {written / 1e9:.2f} GB"
    )
    print(f"          (the job's own summary: {summary_line(first.stdout)})")
    print(f"  rerun   nothing changed: {rerun.seconds:.1f} s wall ({summary_line(rerun.stdout)})")
    for name, count, rate in rates:
        print(f"  embed   {name} random init, CPU, {count} images: {rate:.2f} images/s")
    print("extrapolated")
    for name, _, rate in rates:
        hours = n / rate / 3600
        print(
            f"  embed   {name}, {n:,} images at {rate:.2f} images/s: {hours:,.1f} h "
            f"({hours / (first.seconds / 3600):,.0f}x the import)"
        )


def clipsearch() -> list[str]:
    return [sys.executable, "-m", "clipsearch.cli.main", "--log-level", "WARNING"]


def measure(command: list[str]) -> Measured:
    """Wall time and peak RSS of one command, run as a child of a fresh helper process so
    that RUSAGE_CHILDREN holds that command alone."""
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(time.perf_counter() - t)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(done.stdout, end='')\n"
        "sys.stderr.write(done.stderr)\n"
        "sys.exit(done.returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    seconds, rss_kb, *rest = done.stdout.splitlines()
    return Measured(float(seconds), int(rss_kb) / 1e6, "\n".join(rest))


def summary_line(stdout: str) -> str:
    return next((line for line in stdout.splitlines() if "vectors/s" in line), "?")


def embed_rate(root: Path, model: str, count: int) -> float:
    images = root / f"images-{count}"
    if not images.exists():
        images.mkdir()
        paths = sorted(conformal_clip_data.textile_simulated_root().rglob("*.jpg"))
        step = max(1, len(paths) // count)
        for n, path in enumerate(paths[::step][:count]):
            shutil.copyfile(path, images / f"{n:05d}.jpg")
    out = root / f"embed-{model}"
    done = measure(
        [*clipsearch(), "embed", str(images), "--out", str(out), "--model", model,
         "--pretrained", "none", "--device", "cpu", "--quiet"]
    )  # fmt: skip
    found = re.search(r"([\d.]+) images/s", done.stdout)
    if found is None:
        raise SystemExit(f"embed printed no rate:\n{done.stdout}")
    return float(found.group(1))


def write_source(folder: Path, vectors: int, partition_rows: int) -> None:
    """clip-retrieval's layout, seeded; vectors written in blocks, never held whole."""
    rng = np.random.default_rng(0)
    partitions = -(-vectors // partition_rows)
    digits = len(str(partitions))
    for sub in ("img_emb", "metadata"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for part in range(partitions):
        start = part * partition_rows
        rows = min(partition_rows, vectors - start)
        name = str(part).zfill(digits)
        matrix = np.lib.format.open_memmap(
            folder / "img_emb" / f"img_emb_{name}.npy", "w+", np.float16, (rows, DIM)
        )
        for block in range(0, rows, 100_000):
            chunk = rng.standard_normal((min(100_000, rows - block), DIM), dtype=np.float32)
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            matrix[block : block + len(chunk)] = chunk
        matrix.flush()
        del matrix
        ids = np.arange(start, start + rows)
        table = pa.table(
            {
                "image_path": [f"/data/laion/{i // 10_000:05d}/{i:09d}.jpg" for i in ids],
                "caption": [f"a photo of item {i}, taken somewhere" for i in ids],
                "url": [f"https://images.example.org/{i:09d}.jpg" for i in ids],
                "width": rng.integers(200, 1024, rows),
                "height": rng.integers(200, 1024, rows),
                "similarity": rng.uniform(0.28, 0.4, rows),
            }
        )
        pq.write_table(table, folder / "metadata" / f"metadata_{name}.parquet")


if __name__ == "__main__":
    sys.exit(main())
