"""How close `clipsearch embed` comes to the unavoidable work, and whether its memory is flat.

Run: .venv/bin/python -m bench.embed_pipeline  (or `make bench-embed`)
     .venv/bin/python -m bench.embed_pipeline --device cuda --model ViT-L-14 \
         --batch-size 256 --images 8000 --parts efficiency   (issue 18's GPU row)

Part 1, on the 2,000 JPEGs of conformal-clip-data (or, with --images N, N generated
640x480 JPEGs of the scikit-image photos) with a random-init model (ViT-B-32 by
default) on --device, measured side by side in one run:
  t_decode  read + decode + preprocess alone, per image, in this process (on at most
            --decode-sample images)
  t_model   the model alone on pre-made tensors at the same batch size, per image
  pipeline  `clipsearch embed` end to end (fresh output folder), images/s once its model
            is loaded (and over its whole run, loading included)
  efficiency = pipeline images/s x (t_decode + t_model); 1.0 means the pipeline adds
  nothing over doing the two steps back to back, above 1.0 means overlap wins time back.
  pipeline / encoder alone = pipeline images/s x t_model: with enough decode workers
  the encoder is the bottleneck, and this is how close the pipeline keeps it busy.

Part 2: peak memory (PSS, so pages shared by forked workers count once) of the whole
job, main process and decode workers, sampled every 50 ms, for collections of growing
size built by repeating the set.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from skimage import data as skdata

from clipsearch.collection.ids import item_id
from clipsearch.encoder import load_encoder
from clipsearch.indexer.embed.decode import Decoder
from clipsearch.indexer.embed.job import EmbedConfig, decode_workers, run_embed, usable_cores
from clipsearch.indexer.embed.plan import PlannedItem
from clipsearch.indexer.embed.sources import Reader, SourceSpec, list_source
from clipsearch.models import ModelSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=decode_workers(usable_cores()))
    parser.add_argument("--model-images", type=int, default=256, help="images for t_model")
    parser.add_argument(
        "--images", type=int, help="part 1 on this many generated 640x480 JPEGs instead"
    )
    parser.add_argument("--decode-sample", type=int, default=2000, help="images for t_decode")
    parser.add_argument(
        "--memory-sizes", default="2000,10000,20000", help="collection sizes for part 2 ('' skips)"
    )
    parser.add_argument("--memory-model", default="clipsearch-tiny")
    parser.add_argument("--parts", default="efficiency,memory", help="which parts to run")
    args = parser.parse_args(argv)
    if "efficiency" in args.parts:
        with tempfile.TemporaryDirectory() as generated:
            source = write_jpegs(Path(generated), args.images) if args.images else textiles()
            efficiency(source, args)
    sizes = [int(s) for s in args.memory_sizes.split(",") if s]
    if sizes and "memory" in args.parts:
        memory(textiles(), sizes, args)
    return 0


def textiles() -> str:
    """The 2,000 textile JPEGs of conformal-clip-data. Imported only when used: a GPU host
    without network runs --images, and the package is too large to carry there."""
    import conformal_clip_data

    return str(conformal_clip_data.textile_simulated_root())


def write_jpegs(folder: Path, count: int) -> str:
    """`count` 640x480 JPEGs (quality 90, a camera's size), cycling the scikit-image photos."""
    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"):
        image = Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((640, 480))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    for n in range(count):
        path = folder / f"{n // 1000:03d}" / f"{n:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(photos[n % len(photos)])
    return str(folder)


def efficiency(source: str, args: argparse.Namespace) -> None:
    spec = ModelSpec(args.model, "none", device=args.device)
    encoder = load_encoder(spec)
    items = [PlannedItem(item_id(i.uri), i) for i in list_source(SourceSpec(source))]
    decoder = Decoder(encoder.transform, None, 89_478_485, encoder.input_side)
    print(
        f"{len(items)} images, {args.model} random init on {encoder.device} in "
        f"{encoder.dtype}, batch {args.batch_size}, {args.workers} decode workers, "
        f"{torch.get_num_threads()} torch threads"
    )

    reader = Reader()
    sample = items[: args.decode_sample]
    kept: list[torch.Tensor] = []
    started = time.perf_counter()
    for n, item in enumerate(sample):
        pixels = decoder(n, item, reader).pixels
        if pixels is not None and len(kept) < args.batch_size:
            kept.append(pixels)
    t_decode = (time.perf_counter() - started) / len(sample)

    batch = torch.stack(kept)
    while batch.shape[0] < args.batch_size:  # fewer images than a batch: repeat them
        batch = torch.cat([batch, batch])[: args.batch_size]
    if encoder.device.type == "cuda":  # as the pipeline hands it over: fp16, pinned
        batch = batch.half().pin_memory()
    encoder.encode_pixels(batch)  # warm-up
    batches = max(1, args.model_images // args.batch_size)
    started = time.perf_counter()
    for _ in range(batches):
        encoder.encode_pixels(batch)
    t_model = (time.perf_counter() - started) / (batches * args.batch_size)

    with tempfile.TemporaryDirectory() as out:
        config = EmbedConfig(
            SourceSpec(source), Path(out), spec, batch_size=args.batch_size,
            workers=args.workers, quiet=True,
        )  # fmt: skip
        summary = run_embed(config)
    throughput = summary.embedding_rate
    ideal = 1.0 / (t_decode + t_model)
    print(f"  t_decode  {t_decode * 1e3:8.2f} ms/image  ({1 / t_decode:7.1f} images/s)")
    print(f"  t_model   {t_model * 1e3:8.2f} ms/image  ({1 / t_model:7.1f} images/s)")
    print(f"  back to back (ideal sequential) {ideal:7.1f} images/s")
    print(
        f"  clipsearch embed                {throughput:7.1f} images/s once loaded "
        f"({summary.images_per_second:.1f} over the whole run, "
        f"{summary.setup_seconds:.1f} s of it loading)"
    )
    print(f"  pipeline efficiency = {throughput / ideal:.3f}  (target >= 0.95)")
    print(f"  pipeline / encoder alone = {throughput * t_model:.3f}  (GPU target >= 0.8)")


def memory(source: str, sizes: list[int], args: argparse.Namespace) -> None:
    images = sorted(Path(source).rglob("*.jpg"))
    print(f"peak memory of `clipsearch embed` ({args.memory_model}, {args.workers} workers)")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            folder = Path(tmp) / f"collection-{size}"
            for n in range(size):  # repeats of the set, each a distinct uri (symlinks)
                image = images[n % len(images)]
                link = folder / f"copy{n // len(images):03d}" / f"{image.parent.name}-{image.name}"
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(image)
            command = [
                sys.executable, "-m", "clipsearch.cli.main", "--log-level", "WARNING", "embed",
                str(folder), "--out", str(Path(tmp) / f"out-{size}"), "--model",
                args.memory_model, "--pretrained", "none", "--quiet", "--device", args.device,
                "--workers", str(args.workers), "--batch-size", str(args.batch_size),
            ]  # fmt: skip
            started = time.perf_counter()
            peak = peak_rss_mb(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            seconds = time.perf_counter() - started
            print(f"  {size:7d} images: peak {peak:7.1f} MB  ({size / seconds:6.1f} images/s)")


def peak_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """Peak of the summed memory of a process and its descendants, sampled until it exits."""
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_pss_kb(process.pid))
        time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args[0]} failed with exit status {process.returncode}")
    return peak / 1024


def tree_pss_kb(root: int) -> int:
    """Proportional set size of a process tree: pages shared by forked workers count once."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _pss_kb(pid)
        stack += children.get(pid, [])
    return total


def _pss_kb(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
