"""The Train tab's "Advanced" group: the noise schedule's parameters and the loss's settings, their layout and checks.

The schedule's parameters are the Schedules tab's (T, beta_start, beta_end, cosine s, zero terminal SNR; its "Train
with this schedule" button fills them in), and the loss's are min-SNR weighting (Hang et al. 2023) with its cap gamma,
the label dropout of classifier-free guidance and which noise levels the loss practises (timestep sampling).
`advanced_group` lays the controls out in a closed accordion; `advanced_settings` turns their values into
core.training.TrainConfig fields, or a gr.Error naming the bad control.
"""

from __future__ import annotations

import gradio as gr

from core.diffusion import TIMESTEP_SAMPLINGS, WEIGHTINGS
from core.training import TrainConfig
from explorer.tabs.schedules import MAX_T, MIN_T
from explorer.widgets import (
    BETA_END_RANGE,
    BETA_START_RANGE,
    COSINE_S_RANGE,
    bounded_number,
    number_box,
    schedule_parameter_boxes,
    whole_number,
)

DEFAULTS = TrainConfig()
GAMMA_RANGE = (0.1, 100.0)


def advanced_settings(
    *,
    num_timesteps: float = DEFAULTS.num_timesteps,
    beta_start: float = DEFAULTS.beta_start,
    beta_end: float = DEFAULTS.beta_end,
    cosine_s: float = DEFAULTS.cosine_s,
    zero_terminal_snr: bool = DEFAULTS.zero_terminal_snr,
    weighting: str = DEFAULTS.weighting,
    min_snr_gamma: float = DEFAULTS.min_snr_gamma,
    p_uncond: float = DEFAULTS.p_uncond,
    timestep_sampling: str = DEFAULTS.timestep_sampling,
) -> dict:
    """The Advanced group's values as TrainConfig fields, each checked against its control's range (values from a
    script never saw the page's limits); a gr.Error names the control."""
    if weighting not in WEIGHTINGS:
        raise gr.Error(f"unknown loss weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if timestep_sampling not in TIMESTEP_SAMPLINGS:
        raise gr.Error(
            f"unknown timestep sampling {timestep_sampling!r}; choose one of {', '.join(TIMESTEP_SAMPLINGS)}"
        )
    return {
        "num_timesteps": whole_number("T", num_timesteps, MIN_T, MAX_T),
        "beta_start": bounded_number("beta_start", beta_start, *BETA_START_RANGE),
        "beta_end": bounded_number("beta_end", beta_end, *BETA_END_RANGE),
        "cosine_s": bounded_number("cosine s", cosine_s, *COSINE_S_RANGE),
        "zero_terminal_snr": bool(zero_terminal_snr),
        "weighting": weighting,
        "min_snr_gamma": bounded_number("min-SNR gamma", min_snr_gamma, *GAMMA_RANGE),
        "p_uncond": bounded_number("label dropout", p_uncond, 0.0, 1.0),
        "timestep_sampling": timestep_sampling,
    }


def advanced_group() -> tuple[gr.Accordion, dict[str, gr.components.Component]]:
    """The closed "Advanced" accordion and its controls by `advanced_settings`' names, in the API's order."""
    with gr.Accordion("Advanced: schedule parameters and loss", open=False, elem_id="train-advanced") as accordion:
        with gr.Row():
            num_timesteps = gr.Number(
                DEFAULTS.num_timesteps,
                label="T (number of steps)",
                minimum=MIN_T,
                maximum=MAX_T,
                step=1,
                info="How many small noising steps lead from a picture to pure noise.",
                elem_id="train-num-timesteps",
            )
            zero_terminal_snr = gr.Checkbox(
                DEFAULTS.zero_terminal_snr,
                label="Zero terminal SNR",
                info="End in pure noise at the last step (Lin et al. 2023); needs objective x0 or v.",
                elem_id="train-zero-terminal-snr",
            )
        with gr.Row():
            beta_start, beta_end, cosine_s = schedule_parameter_boxes(
                DEFAULTS.beta_start, DEFAULTS.beta_end, DEFAULTS.cosine_s, elem_prefix="train"
            )
        with gr.Row():
            weighting = gr.Radio(
                list(WEIGHTINGS),
                value=DEFAULTS.weighting,
                label="Loss weighting",
                info="min_snr: stop the almost-clean steps from dominating the loss (Hang et al. 2023).",
            )
            min_snr_gamma = number_box(
                DEFAULTS.min_snr_gamma,
                "min-SNR gamma",
                GAMMA_RANGE,
                "With min_snr: the largest weight a step gets (the paper uses 5).",
            )
            p_uncond = number_box(
                DEFAULTS.p_uncond,
                "Label dropout",
                (0, 1),
                "Class-conditional only: how often the label is hidden, so guidance works later.",
            )
        timestep_sampling = gr.Radio(
            list(TIMESTEP_SAMPLINGS),
            value=DEFAULTS.timestep_sampling,
            label="Timestep sampling",
            info="Which noise levels the model practises: logit_normal, mostly the middle ones; uniform, all alike.",
            elem_id="train-timestep-sampling",
        )
    controls = {
        "num_timesteps": num_timesteps,
        "beta_start": beta_start,
        "beta_end": beta_end,
        "cosine_s": cosine_s,
        "zero_terminal_snr": zero_terminal_snr,
        "weighting": weighting,
        "min_snr_gamma": min_snr_gamma,
        "p_uncond": p_uncond,
        "timestep_sampling": timestep_sampling,  # (last: the API's parameters keep their order)
    }
    return accordion, controls
