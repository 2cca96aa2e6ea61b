"""The Experiments tab's figures and table: several runs (explorer.runs.RunRecord) on the same axes.

- `runs_loss_figure`: each run's smoothed training loss against the optimizer step, on one log axis;
- `runs_bucket_figure`: each run's loss by timestep, against t / T so that runs with different T line up;
- `labelled_grids`: each run's sample grid with its label under it, side by side;
- `comparison_markdown`: a table of the runs' settings (the ones that differ first, in bold) and quality numbers,
  with a plain reading that names the best run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from explorer.figures import PALETTE, TRAINING_HEIGHT, log_ticks, styled
from explorer.images import side_by_side
from explorer.runs import RunRecord

MAX_POINTS = 600  # points per curve sent to the page
SHOWN_FIELDS = ("dataset", "preset", "schedule", "objective", "num_timesteps", "batch_size", "lr")
# quality numbers per kind of data: (metrics key, name, floor key, decimals); lower is better for the first
QUALITY = {
    "digits": (
        ("fd", "FD (lower is better)", "fd_real_floor", 1),
        ("precision", "precision", "precision_real_floor", 2),
        ("recall", "recall", "recall_real_floor", 2),
        ("confident_fraction", "confident", None, 2),
    ),
    "points": (
        ("nn_distance", "nearest-neighbour distance (lower is better)", "nn_real_floor", 3),
        ("sliced_wasserstein", "sliced W2", "sw_real_floor", 3),
    ),
}


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def runs_loss_figure(records: Sequence[RunRecord], labels: Sequence[str]) -> go.Figure:
    """Each run's smoothed loss per optimizer step, overlaid on one log axis."""
    fig = go.Figure()
    for i, (record, label) in enumerate(zip(records, labels, strict=True)):
        keep = np.unique(np.linspace(0, len(record.smoothed) - 1, min(len(record.smoothed), MAX_POINTS)).round())
        keep = keep.astype(np.int64)
        fig.add_trace(
            go.Scatter(
                x=keep + 1,
                y=record.smoothed[keep],
                name=label,
                mode="lines",
                line={"color": _color(i), "width": 3},
                hovertemplate=f"{label}: %{{y:.4g}}<extra></extra>",
            )
        )
    fig = styled(fig, "Training loss (smoothed)", "optimizer step", "loss", height=TRAINING_HEIGHT)
    fig.update_yaxes(type="log", **log_ticks(*(r.smoothed for r in records)))
    return fig


def runs_bucket_figure(records: Sequence[RunRecord], labels: Sequence[str]) -> go.Figure:
    """Each run's recent loss per tenth of the timesteps, against t / T (0: almost clean, 1: pure noise)."""
    fig = go.Figure()
    for i, (record, label) in enumerate(zip(records, labels, strict=True)):
        count = len(record.bucket_losses)
        fig.add_trace(
            go.Scatter(
                x=[(b + 0.5) / count for b in range(count)],
                y=[np.nan if v is None else v for v in record.bucket_losses],
                name=label,
                mode="lines+markers",
                line={"color": _color(i), "width": 3},
                hovertemplate=f"{label}: t/T %{{x:.2f}}, loss %{{y:.4g}}<extra></extra>",
            )
        )
    fig = styled(fig, "Loss by timestep", "t / T", "recent loss", height=TRAINING_HEIGHT)
    fig.update_xaxes(range=[0, 1])
    return fig


LABEL_HEIGHT = 34  # pixels under each grid for its label
LABEL_FONT_SIZE = 20


def labelled_grids(pictures: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """The runs' grids (uint8, gray or RGB) side by side, each with its label centred under it."""
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    cells = []
    for picture, label in zip(pictures, labels, strict=True):
        cell = Image.new("RGB", (max(picture.shape[1], 120), picture.shape[0] + LABEL_HEIGHT), "white")
        cell.paste(Image.fromarray(picture).convert("RGB"), ((cell.width - picture.shape[1]) // 2, 0))
        draw = ImageDraw.Draw(cell)
        width = draw.textlength(label, font=font)
        draw.text(((cell.width - width) / 2, picture.shape[0] + 6), label, fill="black", font=font)
        cells.append(np.asarray(cell))
    return side_by_side(cells, gap=24)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def _quality_rows(records: Sequence[RunRecord]) -> list[str]:
    kinds = {r.metrics["kind"] if r.metrics else None for r in records}
    if len(kinds) != 1 or None in kinds:
        return [f"| quality | {' | '.join(r.metrics['reading'] if r.metrics else 'no metric' for r in records)} |"]
    rows = []
    for key, name, floor, decimals in QUALITY[kinds.pop()]:
        cells = [
            f"{r.metrics[key]:.{decimals}f}" + (f" ({r.metrics[floor]:.{decimals}f})" if floor else "") for r in records
        ]
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return [*rows, f"| reading | {' | '.join(r.metrics['reading'] for r in records)} |"]


def plain_reading(records: Sequence[RunRecord], labels: Sequence[str]) -> str:
    """One sentence: which run scores best on the first quality number, or why none can be named."""
    datasets = sorted({record.config.dataset for record in records})
    if len(datasets) > 1:
        return f"These runs learned different data ({', '.join(datasets)}), so their quality numbers do not compare."
    scored = [(r.metrics, label) for r, label in zip(records, labels, strict=True) if r.metrics]
    if not scored:
        return "These runs' data has no quality metric: compare the sample grids by eye."
    if len(scored) < 2:
        return f"**{scored[0][1]}**: {scored[0][0]['reading']}."
    key, name, floor, decimals = QUALITY[scored[0][0]["kind"]][0]
    ranked = sorted(scored, key=lambda item: item[0][key])
    (best, best_label), (worst, worst_label) = ranked[0], ranked[-1]
    return (
        f"**{best_label}** is closest to the real data: {name.split(' (')[0]} {best[key]:.{decimals}f} against "
        f"{worst[key]:.{decimals}f} for **{worst_label}** (real data scores {best[floor]:.{decimals}f}). "
        "A short run's numbers move from seed to seed: trust a clear gap, not a small one."
    )


def comparison_markdown(records: Sequence[RunRecord], labels: Sequence[str], fields: Sequence[str]) -> str:
    """The runs' settings (the ones that differ first, in bold), their length and quality numbers (each with what
    real data scores in brackets), and a plain reading."""
    header = f"| setting | {' | '.join(labels)} |"
    lines = [plain_reading(records, labels), "", header, "|---|" + "---:|" * len(records)]
    configs = [vars(r.config) for r in records]
    for field in fields:
        lines.append(f"| **{field}** | {' | '.join(f'**{_cell(c.get(field))}**' for c in configs)} |")
    for field in (f for f in SHOWN_FIELDS if f not in fields):
        lines.append(f"| {field} | {' | '.join(_cell(c.get(field)) for c in configs)} |")
    lines.append(f"| steps trained | {' | '.join(f'{r.steps:,} ({r.seconds:.0f} s, {r.state})' for r in records)} |")
    return "\n".join([*lines, *_quality_rows(records)])
