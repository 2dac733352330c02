"""Drawing a recall-vs-speed curve as a PNG with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

from clipsearch.index.manifest import IndexManifest, MeasuredDefaults
from clipsearch.types import QueryKind

WIDTH, HEIGHT, MARGIN = 900, 560, 80
Colour = tuple[int, int, int]
# (query kind, recall measure) -> colour and its name: image queries in blue and orange,
# text in green and red (matplotlib's first four default colours).
COLOURS: dict[tuple[QueryKind, str], tuple[Colour, str]] = {
    (QueryKind.IMAGE, "recall@10"): ((31, 119, 180), "blue"),
    (QueryKind.IMAGE, "recall@1"): ((255, 127, 14), "orange"),
    (QueryKind.TEXT, "recall@10"): ((44, 160, 44), "green"),
    (QueryKind.TEXT, "recall@1"): ((214, 39, 40), "red"),
}


def plot_curve(manifest: IndexManifest, path: Path) -> None:
    """Recall (y) against single-thread queries per second (x, log scale), one dot per
    nprobe and one line per re-rank depth, for image queries and (when measured) text."""
    kinds = {kind: manifest.defaults(kind) for kind in QueryKind}
    curves = {kind: d for kind, d in kinds.items() if d.measured}
    points = [p for d in curves.values() for p in d.recall_curve]
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
    for (kind, name), (colour, _) in COLOURS.items():
        if kind in curves:
            _draw_curve(draw, curves[kind], name, colour, xy)
    title = f"{manifest.version}: {manifest.factory}, {manifest.count:,} vectors"
    draw.text((MARGIN, 20), title, fill="black")
    legend = "  ".join(
        f"{kind.value} {name} ({colour_name})"
        for (kind, name), (_, colour_name) in COLOURS.items()
        if kind in curves
    )
    if QueryKind.TEXT not in curves:
        legend += "  (text queries not measured)"
    draw.text((MARGIN, 40), legend + "; large dot = the default settings", fill="black")
    image.save(path)


def _draw_curve(
    draw: ImageDraw.ImageDraw,
    defaults: MeasuredDefaults,
    name: str,
    colour: Colour,
    xy: Callable[[float, float], tuple[float, float]],
) -> None:
    """One kind's curve of one recall measure: a line per re-rank depth."""
    points, chosen, at_10 = defaults.recall_curve, defaults.reached, name == "recall@10"
    for depth in sorted({p.candidates for p in points}):
        group = [p for p in points if p.candidates == depth]
        coords = [
            xy(max(p.queries_per_second, 1e-3), p.recall_at_10 if at_10 else p.recall_at_1)
            for p in group
        ]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for (x, y), point in zip(coords, group, strict=True):
            radius = 6 if point == chosen else 3
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
            if at_10:
                draw.text((x + 6, y + 4), f"nprobe {point.nprobe}", fill=colour)
        if at_10 and depth:
            draw.text((coords[-1][0] - 40, coords[-1][1] - 18), f"{depth} re-ranked", fill=colour)


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
