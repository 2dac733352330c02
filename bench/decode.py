"""How much faster one decode worker turns JPEGs into model inputs with reduced-scale decoding.

Run: .venv/bin/python -m bench.decode

The scikit-image photos, enlarged and saved as JPEGs (quality 90) at each --sizes longer
side, are decoded and preprocessed for a 224-px model (the seed models' input) in one
process, one thread, both ways side by side in one run:
  full     decode_for_model(data, 0): every pixel decoded, then resized
  reduced  decode_for_model(data, 224): libjpeg decodes at 1/2, 1/4 or 1/8 scale (draft);
           the astronaut column shows the size the square photo is decoded at
Each figure is the best of --repeats passes over the set.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable

import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from skimage import data as skdata

from clipsearch.encoder import decode_for_model

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="640,1024,1600,3000", help="longer sides, px")
    parser.add_argument("--side", type=int, default=224, help="the model input's side")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as in a decode worker
    transform = image_transform_v2(PreprocessCfg(size=args.side), is_train=False)
    print(f"one thread, {len(PHOTOS)} photos per size, model input {args.side} px")
    print(f"{'longer side':>11} {'astronaut':>11} {'full img/s':>11} {'reduced':>9} {'ratio':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        jpegs = [_jpeg(name, size) for name in PHOTOS]
        reduced_size = decode_for_model(jpegs[0], args.side).image.size
        full = _rate(jpegs, lambda d: transform(decode_for_model(d, 0).image), args.repeats)
        fast = _rate(jpegs, lambda d: transform(decode_for_model(d, args.side).image), args.repeats)
        shown = "x".join(map(str, reduced_size))
        print(f"{size:>11} {shown:>11} {full:>11.1f} {fast:>9.1f} {fast / full:>5.2f}x")
    return 0


def _jpeg(name: str, longer_side: int) -> bytes:
    image = Image.fromarray(getattr(skdata, name)()).convert("RGB")
    scale = longer_side / max(image.size)
    image = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _rate(jpegs: list[bytes], work: Callable[[bytes], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for data in jpegs:
            work(data)
        best = min(best, time.perf_counter() - started)
    return len(jpegs) / best


if __name__ == "__main__":
    sys.exit(main())
