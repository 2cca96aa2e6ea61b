"""Schedules tab: overlay noise schedules, read their health, export one as a diffusers scheduler config, and carry
one with its parameters to the Train tab ("Train with this schedule"; explorer.app wires it across the tabs)."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from core.schedules import SCHEDULE_NAMES, NoiseSchedule, make_schedule
from explorer.figures import alpha_bar_figure, amplitude_figure, beta_figure, half_signal_step, log_snr_figure
from explorer.widgets import explanation, schedule_parameter_boxes, whole_number

ZTSNR_SUFFIX = " + zero terminal SNR"
SCHEDULE_CHOICES: tuple[str, ...] = (*SCHEDULE_NAMES, *(f"{name}{ZTSNR_SUFFIX}" for name in SCHEDULE_NAMES))
MIN_T, MAX_T = 10, 4000
HEALTH_HEADERS = [
    "schedule",
    "alpha-bar at t=T-1",
    "terminal SNR",
    "t where alpha-bar = 0.5",
    "betas clipped",
    "warnings",
]
# a schedule leaves "real" signal at the end when more than 2% of the image's amplitude survives
LEFTOVER_AMPLITUDE = 0.02
TERMINAL_SNR_LIMIT = 1e-4
TOO_GENTLE_ALPHA_BAR = 0.05  # more than 22% of the amplitude left at the last step
TOO_AGGRESSIVE_FRACTION = 0.15  # half the signal gone in the first 15% of the steps
# the Train tab's controls "Train with this schedule" sets, in the order `train_settings` returns them
TRAIN_SETTINGS = ("schedule", "objective", "num_timesteps", "beta_start", "beta_end", "cosine_s", "zero_terminal_snr")

INTRO = r"""
### Noise schedules
A schedule decides how fast the image drowns in noise. Each step adds a little noise $\beta_t$; what is left of the
image after $t$ steps is $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$, so
$x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$. A good schedule ends in pure noise
($\bar\alpha_{T-1} \approx 0$) without destroying the image too early.
"""


def parse_choice(choice: str) -> tuple[str, bool]:
    """ "cosine + zero terminal SNR" -> ("cosine", True); refuses anything not offered."""
    if choice not in SCHEDULE_CHOICES:
        raise gr.Error(f"unknown schedule {choice!r}; choose from {', '.join(SCHEDULE_CHOICES)}")
    if choice.endswith(ZTSNR_SUFFIX):
        return choice.removesuffix(ZTSNR_SUFFIX), True
    return choice, False


def build_schedules(
    choices: list[str], num_timesteps: float, beta_start: float, beta_end: float, cosine_s: float
) -> dict[str, NoiseSchedule]:
    """The chosen schedules by label; bad parameters become a gr.Error that says what is wrong."""
    if not choices:
        raise gr.Error("pick at least one schedule to plot")
    num_timesteps = whole_number("T", num_timesteps, MIN_T, MAX_T)
    schedules = {}
    for choice in choices:
        name, ztsnr = parse_choice(choice)
        try:
            schedules[choice] = make_schedule(
                name,
                int(num_timesteps),
                beta_start=float(beta_start),
                beta_end=float(beta_end),
                cosine_s=float(cosine_s),
                zero_terminal_snr=ztsnr,
            )
        except (TypeError, ValueError) as error:
            raise gr.Error(f"{choice}: {error}") from error
    return schedules


def health_warnings(schedule: NoiseSchedule) -> list[str]:
    """Plain-language problems of a schedule (empty when it is healthy)."""
    T = schedule.num_timesteps
    last = float(schedule.alphas_cumprod[-1])
    warnings = []
    if last > TOO_GENTLE_ALPHA_BAR:
        warnings.append(
            f"Too gentle: {math.sqrt(last):.0%} of the image is still there at the last step, so "
            "the model never learns to start from noise. Raise beta_end or T."
        )
    elif math.sqrt(last) > LEFTOVER_AMPLITUDE:
        warnings.append(
            f"The last step is not pure noise: {math.sqrt(last):.1%} of the image's amplitude "
            "survives at t = T-1, but sampling starts from pure noise."
        )
    if float(schedule.snr[-1]) > TERMINAL_SNR_LIMIT:
        warnings.append(
            f"Terminal SNR is {float(schedule.snr[-1]):.2g}, not zero, so the model never trains on "
            "pure noise (Lin et al. 2023). Tick zero terminal SNR to fix it."
        )
    t_half = half_signal_step(schedule)
    if t_half is not None and t_half < TOO_AGGRESSIVE_FRACTION * T:
        warnings.append(
            f"Too aggressive: half the signal is gone by t = {t_half} ({t_half / T:.0%} of the way); "
            "most steps see almost pure noise. Lower beta_end or use cosine."
        )
    return warnings


def health_rows(schedules: dict[str, NoiseSchedule]) -> list[list]:
    """One row per schedule: alpha-bar at the end, terminal SNR, half-signal step, clipped betas, warnings."""
    rows = []
    for label, schedule in schedules.items():
        t_half = half_signal_step(schedule)
        clipped = int((schedule.betas >= 0.999 - 1e-12).sum()) if schedule.params.get("name") == "cosine" else 0
        warnings = health_warnings(schedule)
        rows.append(
            [
                label,
                f"{float(schedule.alphas_cumprod[-1]):.3g}",
                f"{float(schedule.snr[-1]):.3g}",
                "never" if t_half is None else t_half,
                clipped,
                " ".join(f"⚠ {w}" for w in warnings) or "✓ healthy",
            ]
        )
    return rows


def schedule_figures(
    choices: list[str], num_timesteps: float, beta_start: float, beta_end: float, cosine_s: float, log_beta: bool
) -> tuple[go.Figure, go.Figure, go.Figure, go.Figure, list[list]]:
    """Callback: the four plots and the health table for the chosen schedules."""
    schedules = build_schedules(choices, num_timesteps, beta_start, beta_end, cosine_s)
    return (
        alpha_bar_figure(schedules),
        beta_figure(schedules, bool(log_beta)),
        amplitude_figure(schedules),
        log_snr_figure(schedules),
        health_rows(schedules),
    )


def export_config(choice: str, num_timesteps: float, beta_start: float, beta_end: float, cosine_s: float) -> str:
    """Callback: write the chosen schedule as a diffusers `scheduler_config.json`; returns the file's path."""
    schedule = build_schedules([choice], num_timesteps, beta_start, beta_end, cosine_s)[choice]
    try:
        config = schedule.to_diffusers_config()
    except ValueError as error:
        raise gr.Error(str(error)) from error
    folder = Path(tempfile.mkdtemp(prefix="schedule-"))
    path = folder / "scheduler_config.json"
    path.write_text(json.dumps(config, indent=2))
    return str(path)


def train_settings(
    choices: list[str], num_timesteps: float, beta_start: float, beta_end: float, cosine_s: float, objective: str
) -> tuple:
    """Callback of "Train with this schedule": the first ticked schedule (in the list's order) and the parameters as
    values for the Train tab's controls named in TRAIN_SETTINGS. `objective` is the Train tab's: eps becomes v when
    the schedule ends at zero SNR, which eps prediction cannot sample (core.training.TrainConfig.validate)."""
    ticked = [choice for choice in SCHEDULE_CHOICES if choice in (choices or [])]
    if not ticked:
        raise gr.Error("tick a schedule to train with")
    choice = ticked[0]
    schedule = build_schedules([choice], num_timesteps, beta_start, beta_end, cosine_s)[choice]  # checks them
    params = schedule.params
    if params["zero_terminal_snr"] and objective == "eps":
        objective = "v"
    return (
        params["name"],
        objective,
        params["num_timesteps"],
        params["beta_start"],
        params["beta_end"],
        params["cosine_s"],
        params["zero_terminal_snr"],
    )


@dataclass
class SchedulesControls:
    """What other tabs need from the Schedules tab: the controls `train_settings` reads, and its button."""

    choices: gr.CheckboxGroup
    num_timesteps: gr.Slider
    beta_start: gr.Number
    beta_end: gr.Number
    cosine_s: gr.Number
    train_button: gr.Button

    @property
    def train_inputs(self) -> list:
        """`train_settings`' inputs from this tab, in its order (the Train tab's objective comes last)."""
        return [self.choices, self.num_timesteps, self.beta_start, self.beta_end, self.cosine_s]


def build_tab() -> SchedulesControls:
    """Layout and wiring of the Schedules tab; returns the controls "Train with this schedule" reads."""
    explanation(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            choices = gr.CheckboxGroup(
                list(SCHEDULE_CHOICES),
                value=["linear", "cosine"],
                label="Schedules",
                info="Tick the schedules to overlay; 'zero terminal SNR' rescales one to end in pure noise.",
            )
            num_timesteps = gr.Slider(
                MIN_T,
                MAX_T,
                value=1000,
                step=1,
                label="T (number of steps)",
                info="How many small noising steps lead from the image to noise.",
            )
            beta_start, beta_end, cosine_s = schedule_parameter_boxes(1e-4, 0.02, 0.008)
            log_beta = gr.Checkbox(
                True, label="log scale for beta_t", info="Spread out the tiny early betas so you can compare them."
            )
            train_button = gr.Button("Train with this schedule", elem_id="schedules-train")
            gr.Markdown(
                "Opens the Train tab with the first ticked schedule in the list, its T, betas and s.",
                elem_classes=["picture-caption"],
            )
            with gr.Accordion("Export for diffusers", open=False):
                export_choice = gr.Dropdown(
                    list(SCHEDULE_CHOICES),
                    value="linear",
                    label="Schedule to export",
                    info="Saves scheduler_config.json that diffusers' DDPMScheduler loads.",
                )
                export_button = gr.Button("Export scheduler_config.json")
                export_file = gr.File(label="scheduler_config.json", interactive=False)
        with gr.Column(scale=3):
            initial = schedule_figures(["linear", "cosine"], 1000, 1e-4, 0.02, 0.008, True)
            alpha_plot = gr.Plot(
                initial[0], label="alpha-bar_t, the fraction of the image's signal power left at step t"
            )
            with gr.Row():
                amplitude_plot = gr.Plot(
                    initial[2], label="sqrt(alpha-bar) of image and sqrt(1 - alpha-bar) of noise make up x_t"
                )
                log_snr_plot = gr.Plot(initial[3], label="log SNR: above 0 the image dominates, below 0 the noise")
            beta_plot = gr.Plot(initial[1], label="beta_t, the variance of the noise added at step t")
            health = gr.Dataframe(
                initial[4],
                headers=HEALTH_HEADERS,
                label="Schedule health: does it end in noise, and how fast does it get there?",
                interactive=False,
                wrap=True,
            )
    inputs = [choices, num_timesteps, beta_start, beta_end, cosine_s, log_beta]
    outputs = [alpha_plot, beta_plot, amplitude_plot, log_snr_plot, health]
    gr.on(
        [control.change for control in inputs],
        schedule_figures,
        inputs,
        outputs,
        api_name="schedule_figures",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    export_button.click(
        export_config,
        [export_choice, num_timesteps, beta_start, beta_end, cosine_s],
        export_file,
        api_name="export_schedule",
    )
    return SchedulesControls(choices, num_timesteps, beta_start, beta_end, cosine_s, train_button)
