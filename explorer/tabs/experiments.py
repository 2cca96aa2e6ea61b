"""Experiments tab: put a user's training runs side by side, and run the ready-made experiments of a lesson.

Every run trained in the Train tab (or here) stays in the user's run list (explorer.runs, at most 6). Tick some and
see their loss curves on the same axes (labelled by what differs between them, e.g. "cosine" / "linear"), their
loss by timestep, their sample grids drawn from the same noise, and a table of settings (the differing ones in
bold) and quality numbers with a plain reading; export it all as a zip (experiment.json and experiment.png as
`python -m core experiment` writes them, and each run's grid and samples).

A ready-made experiment (core.experiment.READY_EXPERIMENTS: linear vs cosine, eps vs x0 vs v, ...) trains its runs
one after the other, READY_STEPS optimizer steps each (the same updates for every run however busy the
server is; about 25 s on 2 quiet cores), as one training job (explorer.jobs.run_job: queue, Stop between steps,
other users' sampling goes first on the compute worker); each finished run lands in the list and in the view.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from core.data import DatasetError
from core.experiment import READY_EXPERIMENTS, READY_STEPS  # READY_STEPS: each run's steps (about 25 s)
from explorer.experiment_figures import comparison_markdown, labelled_grids, runs_bucket_figure, runs_loss_figure
from explorer.jobs import Job, run_job
from explorer.runs import RunList, RunRecord, export_experiment, record_run, run_labels
from explorer.sessions import HEAVY_CONCURRENCY, HEAVY_GROUP, SessionRegistry
from explorer.training_run import OutOfMemory, status_line, train_live
from explorer.widgets import explanation, file_box, pixel_picture, session_key

NOTHING_CHOSEN = (
    "Tick one or more runs above to compare them. Train some in the **Train** tab, or run a ready-made experiment."
)

INTRO = """
### Experiments: change one thing, train, compare
Every run you train stays here (your last 6). Tick two or more to see them **side by side**: the loss, which noise
levels are hard, and samples drawn **from the same noise**, so any difference comes from what each run learned.
Or press a ready-made experiment: it trains its runs one after the other, the same number of steps each (about
25 s on a quiet server).
"""


class ExperimentsTab:
    """The Experiments tab's callbacks, bound to the app's SessionRegistry (where each user's runs live)."""

    def __init__(self, registry: SessionRegistry):
        self.registry = registry

    def _runs(self, request: gr.Request | None) -> RunList:
        return self.registry.session(session_key(request)).runs

    def run_choices(self, chosen: list[str] | None = None, request: gr.Request | None = None) -> gr.CheckboxGroup:
        """The run list's ticks, refreshed: the user's runs (newest last), keeping the ticked ones that are still
        kept; with none ticked, the last two runs are."""
        records = self._runs(request).records()
        names = [r.name for r in records]
        return run_list(records, [name for name in chosen or [] if name in names] or names[-2:])

    def _chosen(self, chosen: list[str] | None, request: gr.Request | None) -> list[RunRecord]:
        try:
            return self._runs(request).get(chosen or [])
        except ValueError as error:
            raise gr.Error(str(error)) from None

    def compare(self, chosen: list[str] | None, request: gr.Request | None = None) -> tuple:
        """Callback of ticking runs: (loss figure, loss-by-timestep figure, sample grids, table)."""
        return view(self._chosen(chosen, request))

    def export(self, chosen: list[str] | None, request: gr.Request | None = None) -> str:
        """Callback of Export: the ticked runs as experiment.zip (experiment.json, experiment.png, the grids)."""
        records = self._chosen(chosen, request)
        if not records:
            raise gr.Error("Tick at least one run to export.")
        folder = self.registry.session(session_key(request)).new_path("experiment")
        folder.mkdir(parents=True)
        return str(export_experiment(records, folder / "experiment.zip"))

    def run_ready(self, title: str, request: gr.Request | None = None) -> Iterator[tuple]:
        """Callback of "Run this experiment": trains its runs one after the other; yields (progress, run list,
        loss figure, loss-by-timestep figure, grids, table)."""
        if title not in READY_EXPERIMENTS:
            raise gr.Error(f"unknown experiment {title!r}; choose one of: {', '.join(READY_EXPERIMENTS)}")
        planned = READY_EXPERIMENTS[title].runs(steps=READY_STEPS)
        session = self.registry.session(session_key(request))
        unchanged = (gr.update(),) * 5

        def work(job: Job) -> Iterator[tuple]:
            done: list[RunRecord] = []
            for number, run in enumerate(planned, 1):
                head = f"**{title}: run {number} of {len(planned)}** ({run.label}). "
                live = train_live(run.config, compute=job.compute, stop=job.stopped, check_memory=job.check_memory)
                for update in live:
                    if not update.done:
                        yield (head + status_line(update), *unchanged)
                        continue
                    record, note = record_run(session.runs, update, job.compute, title)
                    done += [record] if record else []
                    done = [r for r in done if r in session.runs.records()]  # a 7th run pushes out the oldest
                    ticks = run_list(session.runs.records(), [r.name for r in done])
                    yield (head + status_line(update) + f"  \n{note}", ticks, *view(done))
                if job.stopped():
                    yield (f"**Stopped** in run {number} of {len(planned)}; the runs so far are kept.", *unchanged)
                    return
            yield (f"**{title}: all {len(planned)} runs done.** {READY_EXPERIMENTS[title].look_for}", *unchanged)

        yield from run_job(
            self.registry,
            session,
            "training",
            work,
            waiting=lambda message: (message, *unchanged),
            expected_errors=(DatasetError, OutOfMemory, ValueError),
        )

    def stop(self, request: gr.Request | None = None) -> str:
        """Callback of Stop: the experiment ends after the current training step (finished runs are kept)."""
        if self.registry.request_stop(self.registry.session(session_key(request)), "training"):
            return "Stopping after the current step…"
        return "Nothing to stop: no training run is going."


def run_list(records: list[RunRecord], ticked: list[str]) -> gr.CheckboxGroup:
    """The run list: every kept run by its title, the `ticked` ones ticked."""
    return gr.CheckboxGroup(choices=[(record.title, record.name) for record in records], value=ticked)


def view(records: list[RunRecord]) -> tuple:
    """(loss figure, loss-by-timestep figure, the grids side by side, table) of these runs, labelled by what
    differs (with no runs: nothing but what to do)."""
    if not records:
        return None, None, None, NOTHING_CHOSEN
    fields, labels = run_labels(records)
    grids = labelled_grids([record.picture for record in records], labels)
    return (
        runs_loss_figure(records, labels),
        runs_bucket_figure(records, labels),
        grids,
        comparison_markdown(records, labels, fields),
    )


def look_for(title: str) -> str:
    """What to look for in a ready-made experiment, for the text under its menu."""
    experiment = READY_EXPERIMENTS.get(title)
    return f"**What to look for:** {experiment.look_for}" if experiment else ""


def build_tab(registry: SessionRegistry) -> ExperimentsTab:
    """Layout and wiring of the Experiments tab. `tab.chooser` is the run list: the app refreshes it with
    `tab.run_choices` when the tab opens and when a Train-tab run ends."""
    tab = ExperimentsTab(registry)
    explanation(INTRO)
    first = next(iter(READY_EXPERIMENTS))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            ready = gr.Dropdown(
                list(READY_EXPERIMENTS),
                value=first,
                label="Ready-made experiment",
                info=f"Trains each variant for {READY_STEPS} steps on the bundled digits, one after the other.",
            )
            hint = gr.Markdown(look_for(first))
            with gr.Row():
                start = gr.Button("Run this experiment", variant="primary", elem_id="experiment-start")
                stop = gr.Button("Stop", variant="stop", elem_id="experiment-stop")
            progress = gr.Markdown("", elem_id="experiment-progress")
            chooser = gr.CheckboxGroup(
                [],
                label="Your runs",
                info="Tick the runs to compare (your last 6 are kept; the oldest leaves first).",
                elem_id="experiment-runs",
            )
            export = gr.Button("Export as a zip", elem_id="experiment-export")
            download = gr.File(
                label="experiment.zip: experiment.json, experiment.png and each run's grid and samples",
                interactive=False,
                visible=False,
            )
        with gr.Column(scale=2):
            table = gr.Markdown(NOTHING_CHOSEN, elem_id="experiment-table")
            grids = pixel_picture(
                "Samples of each run",
                "Same noise for all: any difference is what each run learned.",
                320,
                elem_id="experiment-grids",
            )
            with gr.Row():
                loss_plot = gr.Plot(label="Loss of each run: lower is better")
                bucket_plot = gr.Plot(label="Loss by noise level: t/T 1 = pure noise")
    view_outputs = [loss_plot, bucket_plot, grids, table]
    ready.change(look_for, ready, hint, api_name=False, queue=False)
    tab.chooser = chooser
    chooser.change(tab.compare, chooser, view_outputs, api_name="compare_runs")
    export.click(tab.export, chooser, download, api_name="export_experiment")
    download.change(file_box, download, download, api_name=False, queue=False)
    start.click(
        tab.run_ready,
        ready,
        [progress, chooser, *view_outputs],
        api_name="run_experiment",
        concurrency_id=HEAVY_GROUP,
        concurrency_limit=HEAVY_CONCURRENCY,
        show_progress="hidden",
    )
    stop.click(tab.stop, None, progress, api_name=False, concurrency_limit=None)
    return tab
