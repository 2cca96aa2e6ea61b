"""The sampler controls the Sample tab shows twice, for its own run (A) and for Compare's second one (B): the
sampler, its timestep spacing, its steps, DDIM's eta, and a line saying how many network calls they make (kept up
to date as they change; eta is greyed out for the samplers that ignore it).

The samplers go by the names the page shows (explorer.sampling_run.SAMPLER_LABELS), which the API takes too.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.noise_levels import SPACINGS
from core.samplers import SAMPLERS, SamplingDefaults
from explorer.sampling_run import SAMPLER_LABELS, sampler_name

SAMPLER_CHOICES = tuple(SAMPLER_LABELS.values())
MAX_STEPS = 1000  # the slider's end; check_settings refuses more than the model's T
SAMPLER_INFO = (
    "How to walk from noise to a picture: DDPM takes ~1000 small noisy steps; the others take big ones (the "
    "ancestral and SDE ones add fresh noise on the way)."
)
SPACING_INFO = (
    "Which noise levels the steps stop at: linspace, leading and trailing spread them evenly over t (they differ at "
    "the ends); karras packs them near the clean end, where details form."
)
STEPS_INFO = "Sampler steps, 1 to T. DDPM needs ~1000; DDIM and DPM++ do well with 10-50."
ETA_INFO = "0: no fresh noise (the same x_T always gives the same picture); 1: fresh noise each step, like DDPM."


@dataclass(frozen=True)
class SamplerControls:
    """One side's sampler controls, and its network-calls line."""

    sampler: gr.Radio
    spacing: gr.Radio
    steps: gr.Slider
    eta: gr.Slider
    calls: gr.Markdown


def calls_line(sampler: str | None, steps: float | None) -> str:
    """The network-calls line: e.g. "**9 network calls** per sample (Heun: two per step, one on the last)." (empty
    while a value is not one the controls allow)."""
    try:
        name, count = sampler_name(sampler), int(steps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    calls = SAMPLERS[name].network_calls(max(count, 1))
    how = " (Heun: two per step, one on the last)" if calls != count else ""
    return f"**{calls} network call{'s' if calls != 1 else ''}** per sample{how}."


def sampler_changed(sampler: str | None, steps: float | None) -> tuple[str, gr.Slider]:
    """When the sampler or the steps change: the network-calls line, and eta usable for DDIM only."""
    return calls_line(sampler, steps), gr.Slider(interactive=sampler == SAMPLER_LABELS["ddim"])


def defaults_update(defaults: SamplingDefaults) -> tuple[gr.Radio, gr.Radio, gr.Slider, gr.Slider]:
    """The controls set to a checkpoint's sampling defaults: (sampler, spacing, steps, eta)."""
    return (
        gr.Radio(value=SAMPLER_LABELS[defaults.sampler]),
        gr.Radio(value=defaults.spacing),
        gr.Slider(value=defaults.steps),
        gr.Slider(value=defaults.eta),
    )


def build_sampler_controls(
    start: SamplingDefaults, *, sampler: str | None = None, prefix: str = "", elem_prefix: str, row: bool = False
) -> SamplerControls:
    """The controls in the current layout, one under the other (`row`: side by side), starting from `start` (with
    `sampler` instead of its sampler, if given); labels begin with `prefix` ("B: ") and ids with `elem_prefix`."""
    chosen = sampler or SAMPLER_LABELS[start.sampler]
    with gr.Row() if row else gr.Column():
        sampler_radio = gr.Radio(
            list(SAMPLER_CHOICES),
            value=chosen,
            label=f"{prefix}Sampler",
            info=SAMPLER_INFO,
            elem_id=f"{elem_prefix}-sampler",
        )
        spacing = gr.Radio(
            list(SPACINGS),
            value=start.spacing,
            label=f"{prefix}Timestep spacing",
            info=SPACING_INFO,
            elem_id=f"{elem_prefix}-spacing",
        )
        with gr.Column():
            steps = gr.Slider(1, MAX_STEPS, value=start.steps, step=1, label=f"{prefix}Steps", info=STEPS_INFO)
            eta = gr.Slider(
                0,
                1,
                value=start.eta,
                step=0.05,
                label=f"{prefix}eta (DDIM only)",
                info=ETA_INFO,
                interactive=chosen == SAMPLER_LABELS["ddim"],
            )
    calls = gr.Markdown(calls_line(chosen, start.steps), elem_id=f"{elem_prefix}-calls")
    for control in (sampler_radio, steps):
        control.change(
            sampler_changed,
            [sampler_radio, steps],
            [calls, eta],
            api_name=False,
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
        )
    return SamplerControls(sampler_radio, spacing, steps, eta, calls)
