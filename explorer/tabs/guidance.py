"""Guidance made visible, in the Sample tab, for class-conditional models:

* the guidance direction: a fourth picture beside x_t, the predicted x0 and the predicted noise, following the replay
  slider. At each step it shows what the class adds to the model's guess of the finished picture: pred_x0 with the
  class minus pred_x0 without it (core.sampler_base.Step.guidance_x0), grey 0, white where the class adds ink. Only a
  guided run (guidance scale != 1) asks the model both with and without the class, so only it has one to show;
* the guidance sweep: the chosen class from the same x_T and seed at guidance 0, 1, 2, 4 and 8 with the tab's
  sampler and steps, one labelled row per scale (explorer.guidance_sweep), run on the compute worker through
  explorer.jobs.run_job like every heavy run, and ended by the tab's Stop.

For an unconditional model both say that guidance needs a class-conditional model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
from gradio.events import Dependency

from explorer.guidance_sweep import (
    MAX_COLUMNS,
    NEEDS_CLASSES,
    SWEEP_SCALES,
    row_request,
    scale_label,
    sweep_picture,
    sweep_request,
    sweep_steps,
)
from explorer.jobs import Job, run_job, throttled
from explorer.models import DEFAULT_MODEL, ModelEntry, pretrained
from explorer.sampling_run import EACH_CLASS, memory_need
from explorer.sessions import HEAVY_CONCURRENCY, HEAVY_GROUP
from explorer.trajectory import GUIDANCE_RANGE, format_t
from explorer.widgets import LATEX_DELIMITERS, explanation, pixel_picture, progress_html, whole_number

if TYPE_CHECKING:
    from explorer.tabs.sample import SampleTab

SWEEP_FRAME_INTERVAL = 0.2  # seconds between the sweep's progress updates (each finished row is always shown)
DIRECTION_LABEL = "what the class adds"
DIRECTION_CAPTION = r"$\hat x_0$ with minus without the class: white = adds ink"
DIRECTION_ALT = (
    "The guidance direction at the step on show: the model's guess of the finished picture with the class minus "
    "without it; mid-grey where the class changes nothing, bright where it adds ink."
)
WAITING = "Sample with a guidance scale other than 1: this picture then shows what the class adds at every step."
AFTER_THE_RUN = "Shown when the run ends: then drag the slider to see what the class adds at any step."
GUIDANCE_ONE = (
    "Guidance 1 is the plain class model: it never asks the model without the class, so there is no direction to "
    "show. Sample with another scale (0, or 2 and up)."
)
NOT_FOR_POINTS = "The direction is drawn for picture models only."
SWEEP_INTRO = rf"""
The chosen class drawn from the very same $x_T$ (the seed) and the same noise along the way, with the sampler and
steps above, at guidance scales {", ".join(f"{s:g}" for s in SWEEP_SCALES)}: one row per scale, so any difference is
the guidance's. At 0 the class is ignored (the model without a class); at 1 it is the plain class model; above 1 the
model's guess is pushed past it, away from "any digit": clearer, bolder, more alike. Up to {MAX_COLUMNS} samples a row
(the number of images above); "each class in turn" gives one of each digit. Stop (above) ends it.
"""
SWEEP_READY = "Ready: five short runs of the sampler above, one per scale."
SWEEP_LABEL = "guidance sweep"
SWEEP_CAPTION = "A row per guidance scale; a column per sample, one $x_T$"
SWEEP_ALT = (
    "A grid of generated samples: one row per guidance scale (0, 1, 2, 4, 8, labelled on the left), the same "
    "starting noise in every column."
)


def _class_name(label: int | None) -> str:
    return "each class in turn" if label == EACH_CLASS else f"class {label}"


class GuidanceViews:
    """The guidance direction's and the sweep's callbacks, bound to the Sample tab (its models, controls and
    users' sessions)."""

    def __init__(self, tab: SampleTab):
        self.tab = tab

    def _entry(self, model: str, request: gr.Request | None) -> ModelEntry:
        return self.tab.resolve(model, self.tab.user_session(request))

    # ---- the direction picture -------------------------------------------------------------------------------

    def expect(self, model: str, request: gr.Request | None = None) -> tuple:
        """When the model changes, or a run starts: (no picture, what the picture will show for this model)."""
        entry = self._entry(model, request)
        return None, NEEDS_CLASSES if entry.num_classes is None else WAITING

    def starting(self, model: str, request: gr.Request | None = None) -> tuple:
        """When Sample is pressed: the picture cleared until the run ends."""
        picture, note = self.expect(model, request)
        return picture, note if note == NEEDS_CLASSES else AFTER_THE_RUN

    def show_direction(self, index: float, model: str, request: gr.Request | None = None) -> tuple:
        """Callback of the replay slider (and of a run's end): (the guidance direction of saved step `index`, or
        None; a line on what it shows, or why there is none)."""
        entry = self._entry(model, request)
        trajectory = self.tab.user_session(request).trajectory
        if entry.num_classes is None:
            return None, NEEDS_CLASSES
        if trajectory is None or len(trajectory) == 0:
            return None, WAITING
        i = whole_number("step", index, 0, len(trajectory) - 1)
        picture = trajectory.guidance_picture(i)
        if picture is None:
            return None, NOT_FOR_POINTS if trajectory.is_points else GUIDANCE_ONE
        stored = trajectory.guidance_x0[i]  # uint8: 0..255 is -GUIDANCE_RANGE..+GUIDANCE_RANGE
        peak = float(np.abs(stored.astype(np.float32) - 127.5).max()) / 127.5 * GUIDANCE_RANGE
        at_most = "at least" if peak >= GUIDANCE_RANGE * 0.99 else "up to"
        note = (
            rf"At t = {format_t(trajectory.t_saved[i])} the class moves $\hat x_0$ by {at_most} {peak:.2f} (pixels: -1 "
            "to 1): most early, while the shape is decided."
        )
        return picture, note

    def after_run(self, model: str, request: gr.Request | None = None) -> tuple:
        """After a run: the direction of its last saved step (where the replay slider stands)."""
        trajectory = self.tab.user_session(request).trajectory
        last = len(trajectory) - 1 if trajectory is not None and len(trajectory) else 0
        return self.show_direction(last, model, request)

    # ---- the sweep ---------------------------------------------------------------------------------------------

    def sweep_note(self, model: str, request: gr.Request | None = None) -> str:
        """When the model changes: whether this model can be swept."""
        return NEEDS_CLASSES if self._entry(model, request).num_classes is None else SWEEP_READY

    def sweep(self, request: gr.Request | None = None, **controls: object) -> Iterator[tuple]:
        """Callback of "Guidance sweep", given the Sample tab's main controls by name (SampleTab.checked_request;
        its guidance scale is not used): yields (progress, the grid of the rows finished so far, caption)."""
        session = self.tab.user_session(request)
        entry, checked = self.tab.checked_request(session, **controls)
        try:
            shared = sweep_request(entry, checked)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        calls = shared.settings.calls
        total = calls * len(SWEEP_SCALES)

        def work(job: Job) -> Iterator[tuple]:
            finals, grid = [], gr.update()
            run = sweep_steps(entry, shared, compute=job.compute, stop=job.stopped)
            for row, step, trajectory in throttled(run, SWEEP_FRAME_INTERVAL, always=lambda item: item[2].complete):
                text = f"{scale_label(SWEEP_SCALES[row])}: network call {step.index + 1} of {calls}"
                progress = progress_html(row * calls + step.index + 1, total, text)
                if trajectory.complete:
                    finals.append(trajectory.final)
                    grid = sweep_picture(finals)
                    yield progress, grid, gr.update()
                else:
                    yield progress, gr.update(), gr.update()
            if len(finals) < len(SWEEP_SCALES):
                yield progress_html(len(finals) * calls, total, "Stopped."), grid, gr.update()
                return
            caption = (
                f"**{_class_name(shared.label)}**, seed {shared.seed}, {shared.settings.title}: every row starts "
                "from the same x_T with the same noise along the way; only the guidance scale changes."
            )
            yield progress_html(total, total, f"Done: {len(SWEEP_SCALES)} rows."), grid, caption  # the last, whole

        yield from run_job(
            self.tab.registry,
            session,
            "sampling",
            work,
            waiting=lambda text: (progress_html(0, total, text), gr.update(), gr.update()),
            memory=lambda: memory_need(entry, row_request(shared, 2.0)),  # a guided row: two network rows per sample
        )

    # ---- layout and wiring -------------------------------------------------------------------------------------

    def build_direction(self) -> None:
        """The direction picture and its note, placed where it is called (beside the Sample tab's three pictures)."""
        default = pretrained(DEFAULT_MODEL)
        with gr.Column(min_width=160):
            self.picture = pixel_picture(
                DIRECTION_LABEL, DIRECTION_CAPTION, 340, elem_id="sample-guidance", alt_text=DIRECTION_ALT
            )
            first = NEEDS_CLASSES if default is None or default.num_classes is None else WAITING
            self.note = gr.Markdown(first, latex_delimiters=LATEX_DELIMITERS, elem_id="sample-guidance-note")

    def wire_direction(self, model: gr.Dropdown, run: gr.Button, sampled: Dependency, scrub: gr.Slider) -> None:
        """The direction follows the model menu, a run (`sampled`: the Sample button's event) and the replay
        slider."""
        outputs = [self.picture, self.note]
        model.change(self.expect, model, outputs, api_name=False)
        run.click(self.starting, model, outputs, api_name=False, queue=False)
        sampled.success(self.after_run, model, outputs, api_name=False, show_progress="hidden")
        scrub.input(
            self.show_direction,
            [scrub, model],
            outputs,
            api_name="show_guidance_step",
            show_progress="hidden",
            trigger_mode="always_last",
        )

    def build_sweep(self) -> None:
        """Layout and wiring of the sweep section, placed where it is called (under the Sample tab's main run)."""
        default = pretrained(DEFAULT_MODEL)
        with gr.Accordion("Guidance sweep: one class at guidance 0, 1, 2, 4 and 8 from the same noise", open=True):
            explanation(SWEEP_INTRO)
            with gr.Row():
                button = gr.Button("Guidance sweep", elem_id="sample-sweep-run", scale=1)
                first = NEEDS_CLASSES if default is None or default.num_classes is None else SWEEP_READY
                note = gr.Markdown(first, elem_id="sample-sweep-note")
            progress = gr.HTML(elem_id="sample-sweep-progress")
            grid = pixel_picture(SWEEP_LABEL, SWEEP_CAPTION, 420, elem_id="sample-sweep", alt_text=SWEEP_ALT)
            caption = gr.Markdown(elem_id="sample-sweep-caption")
        self.tab.model.change(self.sweep_note, self.tab.model, note, api_name=False)
        button.click(
            self.sweep,
            inputs_kwargs={**self.tab.controls, **self.tab.later_controls},
            outputs=[progress, grid, caption],
            api_name="guidance_sweep",
            concurrency_id=HEAVY_GROUP,
            concurrency_limit=HEAVY_CONCURRENCY,
            show_progress="hidden",
        )
