"""The 2D denoiser made visible, in the Sample tab: for a 2D point model, a figure of the network's arrows over the
plane at the step on show (explorer.denoiser_field: at every grid point, pred_x0 - x, the way to the clean point the
denoiser guesses from there), under the samples the network was given at that step and where the step moved them.
It follows the replay slider (the arrows are recomputed at that step's t, a few ms) and appears when a run ends.
Picture models hide it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr
import plotly.graph_objects as go
from gradio.events import Dependency

from explorer.denoiser_field import FIELD_EXTENT, DenoiserField
from explorer.field_figure import EXPLANATION, denoiser_field_figure
from explorer.models import DEFAULT_MODEL, pretrained
from explorer.trajectory import Trajectory, format_t
from explorer.widgets import whole_number

if TYPE_CHECKING:
    from explorer.tabs.sample import SampleTab

FIELD_LABEL = "2D models: the denoiser's arrows at this step's t"
WAITING = "Sample this 2D model: when the run ends, its arrows appear here and follow the slider."
NOT_FOR_PICTURES = "The arrows are drawn for 2D point models; this run drew pictures."


def condition_text(field: DenoiserField, num_classes: int | None) -> str:
    """How the field's network was asked, for the title: "" (unconditional), ", without a class", ", class 1" or
    ", class 1, guidance 2"."""
    if not num_classes:
        return ""
    if field.label is None:
        return ", without a class"
    guided = f", guidance {field.guidance:g}" if field.guidance != 1.0 else ""
    return f", class {field.label}{guided}"


def field_figure(trajectory: Trajectory, i: int) -> go.Figure:
    """The field figure of saved step i of a 2D run (its network's arrows at that step's t)."""
    field: DenoiserField = trajectory.denoiser_field
    arrows = field.at(trajectory.t_saved[i])
    reference = trajectory.reference.numpy() if trajectory.reference is not None else None
    return denoiser_field_figure(
        arrows.points,
        arrows.arrows,
        arrows.t,
        arrows.alpha_bar,
        FIELD_EXTENT,
        before=trajectory.points_seen(i),
        after=trajectory.x_t[i],
        reference=reference,
        condition=condition_text(field, getattr(field.network, "num_classes", None)),
    )


def field_note(trajectory: Trajectory, i: int) -> str:
    """One line under the figure: what the step on show did, in the field's terms."""
    t = format_t(trajectory.t_saved[i])
    return f"{EXPLANATION} Hollow: the points given to the network at t = {t}; filled: where the step moved them."


class FieldView:
    """The field figure's callbacks, bound to the Sample tab (its models and users' sessions)."""

    def __init__(self, tab: SampleTab):
        self.tab = tab

    def expect(self, model: str, request: gr.Request | None = None) -> tuple:
        """When the model changes: the figure shown (empty) for a 2D model, hidden for a picture model."""
        entry = self.tab.resolve(model, self.tab.user_session(request))
        return gr.Plot(value=None, visible=entry.is_points), gr.Markdown(WAITING, visible=entry.is_points)

    def show_field(self, index: float, request: gr.Request | None = None) -> tuple:
        """Callback of the replay slider (and of a run's end): (the field figure of saved step `index`, a line on
        what it shows); for a picture run, no figure and a line saying so."""
        trajectory = self.tab.user_session(request).trajectory
        if trajectory is None or len(trajectory) == 0:
            raise gr.Error("Sample first: there is no run to draw the arrows of yet.")
        i = whole_number("step", index, 0, len(trajectory) - 1)
        if trajectory.denoiser_field is None:
            return gr.update(), NOT_FOR_PICTURES
        return field_figure(trajectory, i), field_note(trajectory, i)

    def after_run(self, request: gr.Request | None = None) -> tuple:
        """After a run: the field of its last saved step (where the replay slider stands)."""
        trajectory = self.tab.user_session(request).trajectory
        if trajectory is None or len(trajectory) == 0 or trajectory.denoiser_field is None:
            return gr.update(), gr.update()
        return self.show_field(len(trajectory) - 1, request)

    def build(self) -> None:
        """The figure and its line, placed where it is called (under the Sample tab's replay slider)."""
        default = pretrained(DEFAULT_MODEL)
        points = default is not None and default.is_points
        self.plot = gr.Plot(label=FIELD_LABEL, visible=points, elem_id="sample-field")
        self.note = gr.Markdown(WAITING, visible=points, elem_id="sample-field-note")

    def wire(self, model: gr.Dropdown, sampled: Dependency, scrub: gr.Slider) -> None:
        """The figure follows the model menu, a finished run (`sampled`: the Sample button's event) and the replay
        slider."""
        outputs = [self.plot, self.note]
        model.change(self.expect, model, outputs, api_name=False)
        sampled.success(self.after_run, None, outputs, api_name=False, show_progress="hidden")
        scrub.input(
            self.show_field,
            scrub,
            outputs,
            api_name="show_field_step",
            show_progress="hidden",
            trigger_mode="always_last",
        )
