"""Drawing a recall-vs-speed curve as a PNG with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from clipsearch.index.manifest import IndexManifest

WIDTH, HEIGHT, MARGIN = 900, 560, 80
COLOURS = {"recall@10": (31, 119, 180), "recall@1": (255, 127, 14)}


def plot_curve(manifest: IndexManifest, path: Path) -> None:
    """Recall (y) against single-thread queries per second (x, log scale), one dot per nprobe."""
    points = manifest.recall_curve
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    qps = [max(p.queries_per_second, 1e-3) for p in points]
    low, high = math.log10(min(qps)), math.log10(max(qps))
    if high - low < 0.5:
        low, high = low - 0.25, high + 0.25
    recalls = [r for p in points for r in (p.recall_at_1, p.recall_at_10)]
    bottom = max(0.0, math.floor(min(recalls) * 10) / 10 - 0.1) if recalls else 0.0

    def xy(speed: float, recall: float) -> tuple[float, float]:
        x = MARGIN + (math.log10(speed) - low) / (high - low) * (WIDTH - 2 * MARGIN)
        y = HEIGHT - MARGIN - (recall - bottom) / (1 - bottom) * (HEIGHT - 2 * MARGIN)
        return x, y

    _axes(draw, low, high, bottom)
    target_y = xy(10**low, manifest.target_recall)[1]
    draw.line([(MARGIN, target_y), (WIDTH - MARGIN, target_y)], fill=(180, 180, 180), width=1)
    draw.text(
        (WIDTH - MARGIN - 120, target_y - 14), f"target {manifest.target_recall:g}", fill="grey"
    )
    chosen = manifest.reached
    for name, colour in COLOURS.items():
        for depth in sorted({p.candidates for p in points}):  # one line per re-rank depth
            group = [p for p in points if p.candidates == depth]
            coords = [
                xy(
                    max(p.queries_per_second, 1e-3),
                    p.recall_at_10 if "10" in name else p.recall_at_1,
                )
                for p in group
            ]
            if len(coords) > 1:
                draw.line(coords, fill=colour, width=2)
            for (x, y), point in zip(coords, group, strict=True):
                radius = 6 if point == chosen else 3
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
                if "10" in name:
                    draw.text((x + 6, y + 4), f"nprobe {point.nprobe}", fill=colour)
            if "10" in name and depth:
                draw.text(
                    (coords[-1][0] - 40, coords[-1][1] - 18), f"{depth} re-ranked", fill=colour
                )
    title = f"{manifest.version}: {manifest.factory}, {manifest.count:,} vectors"
    draw.text((MARGIN, 20), title, fill="black")
    legend = "  ".join(f"{name} ({'blue' if '10' in name else 'orange'})" for name in COLOURS)
    draw.text((MARGIN, 40), legend + "; large dot = the default settings", fill="black")
    image.save(path)


def _axes(draw: ImageDraw.ImageDraw, low: float, high: float, bottom: float) -> None:
    left, right, top, base = MARGIN, WIDTH - MARGIN, MARGIN, HEIGHT - MARGIN
    draw.line([(left, base), (right, base)], fill="black")
    draw.line([(left, top), (left, base)], fill="black")
    for exponent in range(math.floor(low), math.ceil(high) + 1):
        for step in (1, 2, 5):  # ticks at 1, 2 and 5 times each power of ten
            tick = exponent + math.log10(step)
            if low <= tick <= high:
                x = left + (tick - low) / (high - low) * (right - left)
                draw.line([(x, base), (x, base + 5)], fill="black")
                draw.text((x - 12, base + 10), f"{step * 10**exponent:g}", fill="black")
    steps = 5
    for i in range(steps + 1):
        recall = bottom + (1 - bottom) * i / steps
        y = base - (recall - bottom) / (1 - bottom) * (base - top)
        draw.line([(left - 5, y), (left, y)], fill="black")
        draw.text((left - 45, y - 6), f"{recall:.2f}", fill="black")
    draw.text(
        ((left + right) / 2 - 120, base + 35), "queries/s (one query, one thread)", fill="black"
    )
    draw.text((10, top - 30), "recall", fill="black")
