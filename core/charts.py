"""Charts drawn with PIL, so that the CLI, experiments and benchmarks make PNG figures without a plotting library
(the app's interactive figures are plotly's, in explorer/figures.py).

`draw_line_chart` draws lines with dots on a log y axis (loss or FD against steps or seconds); `line_chart` saves one
as a PNG.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from core.imaging import POINT_COLOURS

CHART_COLORS = POINT_COLOURS  # matplotlib's tab10: ten colours told apart; beyond ten series, lines repeat them dashed
MIN_LABEL_GAP = 28  # pixels between x tick labels; a closer tick keeps its mark but not its number


def draw_line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    log_x: bool = False,
    reference: tuple[str, float] | None = None,
) -> Image.Image:
    """A line chart drawn with PIL (no plotting library needed): one line with dots per series, y on a log
    scale with decade grid lines, x linear from 0 or logarithmic, an optional dashed horizontal reference line."""
    width, height, left, right, top, bottom = 900, 560, 80, 230, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [y for points in series.values() for _, y in points if y > 0] + ([reference[1]] if reference else [])
    y_low = 10 ** math.floor(math.log10(min(values)))
    y_high = 10 ** math.ceil(math.log10(max(values)))
    if y_high <= y_low:
        y_high = y_low * 10
    xs = [x for points in series.values() for x, _ in points]
    if log_x:
        x_low, x_high = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
    else:
        x_low, x_high = 0.0, (max(xs) * 1.05) or 1.0

    def x_fraction(x: float) -> float:
        if log_x:
            return (math.log10(x) - math.log10(x_low)) / (math.log10(x_high) - math.log10(x_low))
        return (x - x_low) / (x_high - x_low)

    def to_xy(x: float, y: float) -> tuple[float, float]:
        fraction = (math.log10(max(y, y_low)) - math.log10(y_low)) / (math.log10(y_high) - math.log10(y_low))
        return left + x_fraction(x) * (width - left - right), height - bottom - fraction * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    decade = y_low
    while decade <= y_high * 1.001:
        for multiple in range(1, 10):
            value = decade * multiple
            if value > y_high * 1.001:
                break
            _, y = to_xy(x_low, value)
            draw.line([left, y, width - right, y], fill=(225, 225, 225) if multiple > 1 else (170, 170, 170))
            if multiple in (1, 2, 5):
                draw.text((left - 8, y), f"{value:g}", fill="black", font=font, anchor="rm")
        decade *= 10
    ticks = sorted(set(xs)) if log_x else [x_low + (x_high - x_low) * i / 5 for i in range(6)]
    labelled = -math.inf
    for tick in ticks:
        x, _ = to_xy(tick, y_low)
        draw.line([x, height - bottom, x, height - bottom + 5], fill="black")
        if x - labelled >= MIN_LABEL_GAP:  # 9 and 10, 19 and 20 calls would print over each other
            draw.text((x, height - bottom + 8), f"{tick:.0f}", fill="black", font=font, anchor="mt")
            labelled = x
    draw.text(((left + width - right) / 2, height - 20), x_label, fill="black", font=font, anchor="mm")
    draw.text((left, 15), title, fill="black", font=font, anchor="lm")
    legend_y = top + 5
    if reference:
        label, value = reference
        _, y = to_xy(x_low, value)
        for x in range(left, width - right, 12):
            draw.line([x, y, x + 6, y], fill=(100, 100, 100), width=2)
        draw.line([width - right + 15, legend_y + 6, width - right + 40, legend_y + 6], fill=(100, 100, 100), width=2)
        draw.text((width - right + 48, legend_y + 6), label, fill="black", font=font, anchor="lm")
        legend_y += 20
    for index, (label, points) in enumerate(series.items()):
        color = CHART_COLORS[index % len(CHART_COLORS)]
        dashed = index >= len(CHART_COLORS)
        xy = [to_xy(x, y) for x, y in points]
        for start, end in itertools.pairwise(xy):
            _line(draw, start, end, color, dashed)
        for x, y in xy:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
        _line(draw, (width - right + 15, legend_y + 6), (width - right + 40, legend_y + 6), color, dashed)
        draw.text((width - right + 48, legend_y + 6), label, fill="black", font=font, anchor="lm")
        legend_y += 20
    return image


def _line(
    draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float], color: tuple, dashed: bool
) -> None:
    if not dashed:
        draw.line([start, end], fill=color, width=3)
        return
    length = math.dist(start, end)
    for a in range(0, int(length), 10):  # 6 px on, 4 px off
        b = min(a + 6, length)
        draw.line(
            [
                tuple(s + (e - s) * a / length for s, e in zip(start, end, strict=True)),
                tuple(s + (e - s) * b / length for s, e in zip(start, end, strict=True)),
            ],
            fill=color,
            width=3,
        )


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], path: Path, **options) -> Path:
    """`draw_line_chart(series, **options)` saved as a PNG at `path` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_line_chart(series, **options).save(path)
    return path
