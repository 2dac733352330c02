"""Encoder throughput: clipsearch's ClipEncoder against a plain copy of the same tower.

    python -m bench.encoder_speed --model ViT-L-14 --device cuda
    python -m bench.encoder_speed --model clipsearch-tiny --device cpu --image-batch 8 \
        --text-batch 8 --seconds 1        (the small CPU mode)

Both sides get random weights and the same input tensors, already on the device:

  ours    clipsearch.encoder.load_encoder(ModelSpec(model, "none", device=...)):
          encode_pixels / encode_tokens, unit vectors back on the host (the real path)
  plain   the same tower built by open_clip alone, its weights cast to fp16 and bf16 on
          CUDA (fp32 on CPU), called as `model.visual(x)` / `model.encode_text(t)` under
          inference_mode; no clipsearch code

Warm-up calls are not timed; the sides then alternate in rounds (so clock drift hits both),
each round bracketed by torch.cuda.synchronize, and each side's median round is reported.
The plain text tower always runs the full 77-token context, as open_clip does; ours cuts a
batch to its longest real query where that is exact, so its ratio there is not like for like.
--physical adds the image tower's FLOPs per image (FlopCounterMode) and the device's dense
matrix-product rate, measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import open_clip
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from clipsearch.encoder import ClipEncoder, load_encoder, register_model_configs
from clipsearch.models import ModelSpec

ROUNDS = 3
WARMUP_CALLS = 3
SUBJECTS = ("dog", "bicycle", "lighthouse", "teapot", "mountain lake", "street market")
SCENES = ("at night", "in the snow", "on a sunny beach", "in an old painting", "from above")


@dataclass(frozen=True)
class PlainRate:
    dtype: str
    per_s: float


@dataclass(frozen=True)
class Speed:
    """One tower's throughput on one device, ours and the plain copies, same inputs."""

    model: str
    kind: str  # "images" or "texts"
    batch: int
    device: str
    ours_dtype: str
    ours_per_s: float
    plain: tuple[PlainRate, ...]

    @property
    def reference(self) -> PlainRate:
        """The fastest plain copy: the bar ours is held to."""
        return max(self.plain, key=lambda p: p.per_s)

    @property
    def ratio(self) -> float:
        return self.ours_per_s / self.reference.per_s


@dataclass(frozen=True)
class Physical:
    """What the chip allows: FLOPs of one image through the tower, and a measured matmul rate."""

    model: str
    image_size: tuple[int, int]
    flop_per_image: float
    matmul_dtype: str
    matmul_flop_per_s: float

    @property
    def images_per_s(self) -> float:
        return self.matmul_flop_per_s / self.flop_per_image


@dataclass(frozen=True)
class Report:
    speeds: tuple[Speed, ...]
    physical: Physical | None
    load_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> Report:
        raw = json.loads(text)
        speeds = tuple(
            Speed(**{**s, "plain": tuple(PlainRate(**p) for p in s["plain"])})
            for s in raw["speeds"]
        )
        phys = raw["physical"]
        physical = Physical(**{**phys, "image_size": tuple(phys["image_size"])}) if phys else None
        return Report(speeds, physical, raw["load_s"])


def plain_dtypes(device: torch.device) -> tuple[torch.dtype, ...]:
    """fp16, and bf16 where the chip has it, on CUDA; fp32 on CPU, where half is slow."""
    if device.type != "cuda":
        return (torch.float32,)
    if torch.cuda.is_bf16_supported():
        return (torch.float16, torch.bfloat16)
    return (torch.float16,)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.").replace("float", "fp").replace("bfp16", "bf16")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(
    sides: dict[str, Callable[[], object]], items: int, seconds: float, device: torch.device
) -> dict[str, float]:
    """Items per second of each side: warm-ups untimed, then alternating timed rounds."""
    slowest = 0.0
    for step in sides.values():
        for _ in range(WARMUP_CALLS):
            step()
        synchronize(device)
        started = time.perf_counter()
        step()
        synchronize(device)
        slowest = max(slowest, time.perf_counter() - started)
    calls = max(1, int(seconds / (ROUNDS * len(sides) * slowest)))
    rounds: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, step in sides.items():
            synchronize(device)
            started = time.perf_counter()
            for _ in range(calls):
                step()
            synchronize(device)
            rounds[name].append(time.perf_counter() - started)
    return {name: items * calls / statistics.median(times) for name, times in rounds.items()}


def sample_texts(n: int) -> list[str]:
    """Short search-like queries, varied in length, as a server receives them."""
    return [
        f"a photo of a {SUBJECTS[i % len(SUBJECTS)]} {SCENES[(i // len(SUBJECTS)) % len(SCENES)]}"
        for i in range(n)
    ]


class Towers:
    """clipsearch's encoder and a plain open_clip model (fp32) of one architecture, on device."""

    def __init__(self, model: str, device: torch.device) -> None:
        register_model_configs()
        self.model = model
        self.device = device
        started = time.perf_counter()
        self.encoder: ClipEncoder = load_encoder(ModelSpec(model, "none", device=str(device)))
        # Built on the device itself: ViT-g-14's random init takes ~20 s of host CPU.
        with device:
            self.base = open_clip.create_model(model, pretrained=None, device=device)
        self.base.eval()
        self.load_s = time.perf_counter() - started

    def images(self, batch: int, seconds: float) -> Speed:
        encoder, (height, width) = self.encoder, self.encoder.info.preprocess.size
        generator = torch.Generator().manual_seed(0)
        pixels = torch.randn(batch, 3, height, width, generator=generator).to(self.device)
        sides: dict[str, Callable[[], object]] = {"ours": lambda: encoder.encode_pixels(pixels)}
        for dtype in plain_dtypes(self.device):
            tower = copy.deepcopy(self.base.visual).to(dtype)
            sides[dtype_name(dtype)] = _inference(tower, pixels.to(dtype))
        return self._speed("images", batch, compare(sides, batch, seconds, self.device))

    def texts(self, batch: int, seconds: float) -> Speed:
        encoder = self.encoder
        tokens = encoder.tokenize(sample_texts(batch)).to(self.device)
        sides: dict[str, Callable[[], object]] = {"ours": lambda: encoder.encode_tokens(tokens)}
        for dtype in plain_dtypes(self.device):
            model = copy.deepcopy(self.base).to(dtype)
            sides[dtype_name(dtype)] = _inference(model.encode_text, tokens)
        return self._speed("texts", batch, compare(sides, batch, seconds, self.device))

    def physical(self) -> Physical:
        """FLOPs of one image through the visual tower, against a measured matmul rate."""
        height, width = self.encoder.info.preprocess.size
        counter = FlopCounterMode(display=False)
        # Counted on the plain path: under inference_mode nn.MultiheadAttention takes a fused
        # op whose in-projection the counter misses, and fused attention kernels are not
        # counted on CPU; the math backend's matmuls are (ViT-L-14: 162.0 GFLOP, as by hand).
        with sdpa_kernel(SDPBackend.MATH), counter:
            self.base.visual(torch.zeros(1, 3, height, width, device=self.device))
        dtype, rate = matmul_rate(self.device)
        return Physical(self.model, (height, width), counter.get_total_flops(), dtype, rate)

    def _speed(self, kind: str, batch: int, rates: dict[str, float]) -> Speed:
        ours = rates.pop("ours")
        plain = tuple(PlainRate(name, per_s) for name, per_s in rates.items())
        ours_dtype = dtype_name(self.encoder.dtype)
        return Speed(self.model, kind, batch, str(self.device), ours_dtype, ours, plain)


def _inference(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], object]:
    def step() -> object:
        with torch.inference_mode():
            return fn(x)

    return step


def matmul_rate(device: torch.device) -> tuple[str, float]:
    """Dense matrix-product FLOP/s on random data: bf16 8192^3 on CUDA, a small fp32 one on CPU."""
    dtype, n = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, 512)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    per_s = compare({"mm": lambda: a @ b}, 1, 1.0, device)["mm"]
    return dtype_name(dtype), 2 * n**3 * per_s


def measure(
    model: str, device: torch.device, batches: dict[str, int], seconds: float, physical: bool
) -> Report:
    """Load both sides once, then time each kind in `batches` ("images", "texts")."""
    towers = Towers(model, device)
    speeds = []
    if "images" in batches:
        speeds.append(towers.images(batches["images"], seconds))
    if "texts" in batches:
        speeds.append(towers.texts(batches["texts"], seconds))
    return Report(tuple(speeds), towers.physical() if physical else None, towers.load_s)


def describe(speed: Speed) -> str:
    plain = ", ".join(f"{p.dtype} {p.per_s:,.0f}" for p in speed.plain)
    return (
        f"{speed.model} {speed.kind}, batch {speed.batch} on {speed.device}: "
        f"ours ({speed.ours_dtype}) {speed.ours_per_s:,.0f}/s; plain copy {plain}/s; "
        f"ours / best plain = {speed.ratio:.2f}"
    )


def describe_physical(phys: Physical) -> str:
    return (
        f"{phys.model} image tower: {phys.flop_per_image / 1e9:.3g} GFLOP per "
        f"{phys.image_size[0]}x{phys.image_size[1]} image (FlopCounterMode); dense "
        f"{phys.matmul_dtype} matmul measured {phys.matmul_flop_per_s / 1e12:.3g} TFLOP/s "
        f"-> at most {phys.images_per_s:,.0f} img/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="ViT-L-14")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kinds", default="images,texts", help="images, texts or both")
    parser.add_argument("--image-batch", type=int, default=512)
    parser.add_argument("--text-batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=6.0, help="timed, per kind, all sides")
    parser.add_argument("--physical", action="store_true", help="add the FLOP and matmul limit")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    sizes = {"images": args.image_batch, "texts": args.text_batch}
    batches = {kind: sizes[kind] for kind in args.kinds.split(",") if kind}
    if not batches.keys() <= sizes.keys():
        parser.error(f"--kinds: expected images and/or texts, got {args.kinds}")
    report = measure(args.model, torch.device(args.device), batches, args.seconds, args.physical)
    print(f"{args.model}: both sides loaded in {report.load_s:.1f} s")
    for speed in report.speeds:
        print(describe(speed))
    if report.physical:
        print(describe_physical(report.physical))
    if args.json:
        args.json.write_text(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
