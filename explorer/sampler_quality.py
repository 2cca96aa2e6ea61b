"""The Sample tab's "quality vs network calls" chart: for one model, each sampler's sample quality against the
network calls it makes, with DDPM over every timestep as the reference to reach.

The numbers are core.sampler_sweep's: for a shipped model, the sweep benchmarks/sampler_quality.py wrote next to
its checkpoint (QUALITY_FILE; the "report" split of the held-out digits, or the 2D set's points); for a user's own
model, a smaller sweep measured on request (`measure_plan`, `measure`: every sampler of SWEEP_SAMPLERS at
MEASURE_CALLS calls, MEASURE_N samples from one seed, then the reference). Quality is the Fréchet distance for digits
and the sliced Wasserstein-2 distance for 2D points (core.sampler_sweep.quality_value): lower is better.

`quality_figure` is a pure figure builder like explorer.figures' (whose style it uses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import plotly.graph_objects as go

from core.sampler_sweep import REFERENCE, SWEEP_SAMPLERS, SamplerChoice, SweepPoint, mean_by_label, sweep
from core.samplers import DEFAULT_SPACING
from explorer.figures import PALETTE, log_ticks, styled
from explorer.models import ModelEntry
from explorer.sampling_run import check_settings, sampler_label

MEASURE_CALLS = (5, 10, 20)
MEASURE_N = 100  # samples per point: FD at n = 100 is noisy but ranks the samplers (core/metrics.py)
MEASURE_SEED = 0
SAMPLER_COLOURS = (*PALETTE[:6], PALETTE[7])  # one per SWEEP_SAMPLERS choice (PALETTE's yellow is faint on white)
REFERENCE_COLOUR = "#777777"
QUALITY_HEIGHT = 520
SAME_TOLERANCE = 1e-4  # relative: two curves this close are one method (different samplers differ by percents)
METRIC_NAMES = {"digits": "FD to real digits", "points": "sliced W2 to the data"}


@dataclass(frozen=True)
class Curve:
    """One sampler with one spacing: its mean quality and sampling time at each number of network calls."""

    name: str  # as the legend writes it, e.g. "DPM++ 2M, karras"
    colour: str
    calls: tuple[int, ...]
    values: tuple[float, ...]  # FD or sliced W2, mean over the seeds
    seconds: tuple[float, ...]  # the time to draw the samples, mean over the seeds


@dataclass(frozen=True)
class QualityCurves:
    """What the chart draws: the samplers' curves, the reference (DDPM over every timestep), and the metric."""

    curves: tuple[Curve, ...]
    reference: Curve | None
    metric: str  # METRIC_NAMES' value
    n: int  # samples per point
    seeds: int


def _rank(point: SweepPoint) -> int:
    """The place of the point's sampler in SWEEP_SAMPLERS (its colour and its place in the legend)."""
    for i, choice in enumerate(SWEEP_SAMPLERS):
        if (choice.name, choice.eta) == (point.sampler, point.eta):
            return i
    return len(SWEEP_SAMPLERS)


def quality_curves(points: Sequence[SweepPoint], split: str) -> QualityCurves:
    """The chart's curves from a sweep's points (split: "report" for digits, "points" for 2D sets); ValueError when
    there are none or they are not a sweep with that split's scores."""
    if not points:
        raise ValueError("no measured points")
    try:
        return _curves(points, split)
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a sweep with {split!r} scores ({type(error).__name__}: {error})") from None


def _curves(points: Sequence[SweepPoint], split: str) -> QualityCurves:
    by_label = {p.label: p for p in points}
    means = mean_by_label(points, split)
    ranked, reference = [], None
    for label, rows in means.items():
        first = by_label[label]
        rank = _rank(first)
        curve = Curve(
            f"{sampler_label(first.sampler, first.eta)}, {first.spacing}",
            SAMPLER_COLOURS[rank] if rank < len(SAMPLER_COLOURS) else PALETTE[6],
            *(tuple(column) for column in zip(*rows, strict=True)),
        )
        if label == REFERENCE.label:
            reference = replace(curve, name=f"DDPM, every timestep ({curve.calls[0]} calls)", colour=REFERENCE_COLOUR)
        else:
            ranked.append(((len(curve.calls) == 1, rank, curve.name), curve))
    curves = [curve for _, curve in sorted(ranked, key=lambda item: item[0])]
    metrics = points[0].metrics[split]
    return QualityCurves(
        tuple(curves), reference, METRIC_NAMES[metrics["kind"]], int(metrics["n"]), len({p.seed for p in points})
    )


def twins(quality: QualityCurves) -> dict[str, str]:
    """Lines that lie on an earlier one (name -> the earlier one's name), to SAME_TOLERANCE: samplers that take the
    same steps, as Euler takes DDIM's with eta 0 (Karras et al. 2022) and Euler ancestral DDIM's with eta 1 (the
    shipped digits' FDs agree to 1e-6, float rounding apart)."""
    found: dict[str, str] = {}
    for i, curve in enumerate(quality.curves):
        for earlier in quality.curves[:i]:
            same = earlier.calls == curve.calls and all(
                math.isclose(a, b, rel_tol=SAME_TOLERANCE) for a, b in zip(earlier.values, curve.values, strict=True)
            )
            if len(curve.calls) > 1 and same:
                found[curve.name] = earlier.name
                break
    return found


def quality_note(quality: QualityCurves) -> str:
    """What the chart alone does not say: which lines hide another, what the diamonds are ("" if neither)."""
    notes = []
    same = twins(quality)
    if same:
        pairs = "; ".join(f"{_sampler(earlier)} = {_sampler(name)}" for name, earlier in same.items())
        notes.append(f"A dotted line lies on another: the two take the same steps ({pairs}).")
    spacings = sorted({_spacing(c.name) for c in quality.curves if len(c.calls) == 1})
    if spacings:
        notes.append(f"Diamonds: the samplers with the {' or '.join(spacings)} spacing (hover for their names).")
    return " ".join(notes)


def _sampler(name: str) -> str:
    return name.rsplit(", ", 1)[0]


def _spacing(name: str) -> str:
    return name.rsplit(", ", 1)[-1]


def quality_figure(quality: QualityCurves) -> go.Figure:
    """Quality against network calls, both on log axes: a line per sampler measured at several call counts (dotted
    where it lies on an earlier one, so that both show), a diamond per one measured at one count only (another
    spacing, named on hover), and the reference as a dashed grey line across."""
    fig = go.Figure()
    hidden = twins(quality)
    for curve in quality.curves:
        several = len(curve.calls) > 1
        fig.add_trace(
            go.Scatter(
                x=curve.calls,
                y=curve.values,
                customdata=curve.seconds,
                name=curve.name,
                mode="lines+markers" if several else "markers",
                line={"color": curve.colour, "width": 3, "dash": "dot" if curve.name in hidden else "solid"},
                marker={
                    "color": curve.colour,
                    "size": 8 if several else 12,
                    "symbol": "circle" if several else "diamond",
                },
                showlegend=several,
                hovertemplate=f"%{{x}} calls: {quality.metric} %{{y:.3g}}, drawn in %{{customdata:.2f}} s"
                f"<extra>{curve.name}</extra>",
            )
        )
    calls = [c for curve in quality.curves for c in curve.calls]
    values = [v for curve in quality.curves for v in curve.values]
    if quality.reference is not None and calls:
        value = quality.reference.values[0]
        values.append(value)
        fig.add_trace(
            go.Scatter(
                x=[min(calls), max(calls)],
                y=[value, value],
                name=quality.reference.name,
                mode="lines",
                line={"color": REFERENCE_COLOUR, "width": 2, "dash": "dash"},
                hovertemplate=f"{quality.metric} %{{y:.3g}} at {quality.reference.calls[0]} calls"
                f"<extra>{quality.reference.name}</extra>",
            )
        )
    title = f"Sample quality against network calls ({quality.n} samples per point; lower is better)"
    fig = styled(fig, title, "network calls per sample", quality.metric, height=QUALITY_HEIGHT)
    fig.update_xaxes(type="log", **log_ticks(calls))
    fig.update_yaxes(type="log", **log_ticks(values))
    fig.update_layout(hovermode="closest")
    return fig


def measure_plan(entry: ModelEntry, calls: Sequence[int] = MEASURE_CALLS) -> tuple[list, list[str]]:
    """What `measure` runs for this model: [(SamplerChoice, steps)], every SWEEP_SAMPLERS choice (on trailing
    timesteps, core.samplers.DEFAULT_SPACING) at each of `calls` that fits T, then the reference (DDPM over
    every timestep); and a note for each choice this model cannot run (explorer.sampling_run.check_settings)."""
    num_timesteps = entry.checkpoint.schedule.num_timesteps
    spacing = DEFAULT_SPACING
    plan: list[tuple[SamplerChoice, int]] = []
    refused: list[str] = []
    for choice in (*(replace(c, spacing=spacing) for c in SWEEP_SAMPLERS), REFERENCE):
        counts = [num_timesteps] if choice is REFERENCE else calls
        steps = sorted({s for s in (choice.steps_for(c) for c in counts) if s <= num_timesteps})
        try:
            for s in steps:
                check_settings(entry, choice.name, s, choice.eta, choice.spacing)
        except ValueError as error:
            refused.append(f"{sampler_label(choice.name, choice.eta)}: {error}")
            continue
        plan += [(choice, s) for s in steps]
    return plan, refused


def measure(
    entry: ModelEntry,
    plan: Sequence[tuple[SamplerChoice, int]],
    *,
    compute: Callable[[Callable[[], object]], object],
    stop: Callable[[], bool],
) -> Iterator[SweepPoint]:
    """The plan's points one by one, each drawn and scored through `compute` (the app's compute worker), until
    stop() says so."""
    points = sweep(entry.checkpoint, plan, n=MEASURE_N, seeds=(MEASURE_SEED,), model=entry.model, stop=stop)
    while not stop():
        point = compute(lambda: next(points, None))
        if point is None:
            return
        yield point  # type: ignore[misc]
