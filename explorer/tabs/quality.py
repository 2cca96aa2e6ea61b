"""The Sample tab's "Quality vs network calls" section, under Compare: for the chosen model, a line per sampler
(explorer.sampler_quality), read from a shipped model's precomputed sweep, or measured on request for the user's own
model: a sampling job on the compute worker through explorer.jobs.run_job, drawn point by point, that Stop ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr
import plotly.graph_objects as go

from core.sampler_sweep import read_quality
from explorer.jobs import Job, run_job
from explorer.models import DEFAULT_MODEL, ModelEntry, pretrained
from explorer.sampler_quality import (
    MEASURE_CALLS,
    MEASURE_N,
    measure,
    measure_plan,
    quality_curves,
    quality_figure,
    quality_note,
)
from explorer.sessions import HEAVY_CONCURRENCY, HEAVY_GROUP
from explorer.tabs.sample import SampleTab
from explorer.widgets import explanation

CHART_EXPLANATION = (
    "Lower is better; each line is a sampler (with its timestep spacing); fewer calls = faster; the dashed line is "
    "DDPM with every timestep, the quality the others try to reach with far fewer calls."
)
NOT_MEASURED_SHIPPED = (
    "Not measured yet for this model: `python benchmarks/sampler_quality.py` writes these numbers for the shipped "
    "models."
)
NOT_MEASURED_OWN = (
    f"Not measured yet for this model. **Measure for this model** draws {MEASURE_N} samples with every sampler at "
    f"{', '.join(map(str, MEASURE_CALLS))} network calls, then with DDPM over every timestep, and scores them: about "
    "a minute for a tiny digit model on 2 cores, most of it DDPM's (Stop keeps what is measured)."
)
MEASURE_LABEL = "Measure for this model"
NO_METRIC = "only the digits and the 2D toy sets have a quality metric."


def _data(entry: ModelEntry) -> str:
    """What the model was trained on, for a message."""
    return f"{entry.dataset_name!r}" if entry.dataset_name not in ("", "?") else "data of its own"


def _split(entry: ModelEntry) -> str:
    return "points" if entry.is_points else "report"


def _figure(points: list, entry: ModelEntry) -> go.Figure:
    return quality_figure(quality_curves(points, _split(entry)))


def chart_for(entry: ModelEntry) -> tuple[go.Figure | None, str, bool]:
    """What the section shows for this model: (the chart, or None when there is none; a note on where its numbers
    come from or why there are none; whether the user may measure it: their own models with a metric)."""
    if not entry.scorable:
        return None, f"No chart for this model: {NO_METRIC} It was trained on {_data(entry)}.", False
    if not entry.shipped:
        if not entry.measured:
            return None, NOT_MEASURED_OWN, True
        quality = quality_curves(entry.measured, _split(entry))
        measured = f"Measured in this session: {len(entry.measured)} points, {MEASURE_N} samples each."
        return quality_figure(quality), f"{measured} {quality_note(quality)}".strip(), True
    if not entry.quality_path.is_file():
        return None, NOT_MEASURED_SHIPPED, False
    try:
        quality = quality_curves(read_quality(entry.quality_path), _split(entry))
    except ValueError as error:
        return None, f"The precomputed numbers could not be read: {error}", False
    note = (
        f"Precomputed by `benchmarks/sampler_quality.py`: {quality.n} samples per point, the mean of "
        f"{quality.seeds} seed{'s' if quality.seeds != 1 else ''} (hover a point for the seconds it took there). "
        f"{quality_note(quality)}"
    ).strip()
    return quality_figure(quality), note, False


class QualitySection:
    """The section's callbacks, bound to the Sample tab (its models and its users' sessions)."""

    def __init__(self, tab: SampleTab):
        self.tab = tab

    def show(self, model: str, request: gr.Request | None = None) -> tuple:
        """When the model changes: (its chart, the note under it, the Measure button, the Stop button); see
        chart_for."""
        figure, note, measurable = chart_for(self.tab.resolve(model, self.tab.user_session(request)))
        buttons = gr.Button(visible=measurable), gr.Button(visible=measurable)
        return gr.Plot(figure, visible=figure is not None), note, *buttons

    def measure(self, model: str, request: gr.Request | None = None) -> Iterator[tuple]:
        """Callback of "Measure for this model": the smaller sweep (explorer.sampler_quality.measure_plan) of the
        user's own model, yielding (chart, note) after every point; the points are kept with the model."""
        session = self.tab.user_session(request)
        entry = self.tab.resolve(model, session)
        if entry.shipped:
            raise gr.Error("The shipped models' chart is measured beforehand; measuring is for your own models.")
        if not entry.scorable:
            raise gr.Error(f"Nothing to measure with: {NO_METRIC} This model was trained on {_data(entry)}.")
        plan, refused = measure_plan(entry)
        cannot = "".join(f"\n\nNot measured: {reason}" for reason in refused)
        if not plan:
            raise gr.Error(f"No sampler can run this model.{cannot}")

        def work(job: Job) -> Iterator[tuple]:
            entry.measured = []
            for done, point in enumerate(measure(entry, plan, compute=job.compute, stop=job.stopped), 1):
                entry.measured = [*entry.measured, point]
                what = f"{point.label} at {point.calls} calls, drawn in {point.seconds:.1f} s"
                chart = gr.Plot(_figure(entry.measured, entry), visible=True)
                yield chart, f"Measuring: {done} of {len(plan)} points ({what}).{cannot}"
            ended = "Measured" if len(entry.measured) == len(plan) else "Stopped after"
            yield gr.update(), f"{ended} {len(entry.measured)} of {len(plan)} points, {MEASURE_N} samples each.{cannot}"

        yield from run_job(
            self.tab.registry,
            session,
            "sampling",
            work,
            waiting=lambda text: (gr.update(), text),
            expected_errors=(ValueError,),
        )

    def stop(self, request: gr.Request | None = None) -> str:
        if self.tab.registry.request_stop(self.tab.user_session(request), "sampling"):
            return "Stopping after the current point…"
        return "Nothing to stop: nothing is being measured."


def build_section(tab: SampleTab) -> QualitySection:
    """Layout and wiring of the section, placed where it is called (under Compare)."""
    section = QualitySection(tab)
    default = pretrained(DEFAULT_MODEL)
    figure, note, measurable = chart_for(default) if default else (None, "", False)
    with gr.Accordion("Quality vs network calls: which sampler is best for this model?", open=True):
        chart = gr.Plot(figure, label="Quality vs network calls", visible=figure is not None, elem_id="sample-quality")
        explanation(CHART_EXPLANATION)
        text = gr.Markdown(note, elem_id="sample-quality-note")
        with gr.Row():
            measure_button = gr.Button(MEASURE_LABEL, visible=measurable, elem_id="sample-quality-measure")
            stop_button = gr.Button("Stop", variant="stop", visible=measurable, elem_id="sample-quality-stop")

    tab.model.change(section.show, tab.model, [chart, text, measure_button, stop_button], api_name="sampler_quality")
    measure_button.click(
        section.measure,
        tab.model,
        [chart, text],
        api_name="measure_quality",
        concurrency_id=HEAVY_GROUP,
        concurrency_limit=HEAVY_CONCURRENCY,
        show_progress="hidden",
    )
    stop_button.click(section.stop, None, text, api_name="stop_measuring", concurrency_limit=None)
    return section
