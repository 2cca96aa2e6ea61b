"""`build_app()`: assembles the explorer's tabs into one Gradio Blocks app.

Until the explorer's tabs land, the app serves one tab that introduces the project and shows the core library
working: the alpha-bar curves of the built-in noise schedules, computed live by `core.schedules`.
"""

from __future__ import annotations

import gradio as gr

from core import __version__
from core.schedules import SCHEDULE_NAMES, make_schedule

TITLE = "DDPM Explorer"
INTRO = f"""# {TITLE}
See every part of a denoising diffusion model move: noise schedules, the forward process, the time embedding,
the U-Net, live training and step-by-step sampling. (core {__version__})

The forward process blends an image $x_0$ with Gaussian noise $\\epsilon$:
$x_t = \\sqrt{{\\bar\\alpha_t}}\\, x_0 + \\sqrt{{1 - \\bar\\alpha_t}}\\, \\epsilon$.
The table shows how much of the image survives ($\\bar\\alpha_t$) at a few steps of each built-in schedule;
move T to see how the number of steps changes it.
"""


def schedule_table(num_timesteps: int = 1000) -> list[list]:
    """Rows of (schedule, alpha-bar at t = 0, T/4, T/2, 3T/4, T-1) for every built-in schedule."""
    marks = [0, num_timesteps // 4, num_timesteps // 2, 3 * num_timesteps // 4, num_timesteps - 1]
    rows = []
    for name in SCHEDULE_NAMES:
        alpha_bar = make_schedule(name, num_timesteps).alphas_cumprod
        rows.append([name, *(f"{float(alpha_bar[t]):.4g}" for t in marks)])
    return rows


def schedule_table_for(num_timesteps: float) -> list[list]:
    """Callback: the table for a T from the slider (or the API), validated."""
    if num_timesteps is None or not 10 <= float(num_timesteps) <= 4000:
        raise gr.Error(f"T must be between 10 and 4000, got {num_timesteps}")
    return schedule_table(int(num_timesteps))


def build_app() -> gr.Blocks:
    """The whole app as a Blocks object (launched by app.py, mounted by tests)."""
    with gr.Blocks(title=TITLE) as demo, gr.Tab("About"):
        gr.Markdown(INTRO, latex_delimiters=[{"left": "$", "right": "$", "display": False}])
        steps = gr.Slider(
            10,
            4000,
            value=1000,
            step=10,
            label="T, the number of diffusion steps",
            info="More steps make each step gentler; alpha-bar at the ends barely moves.",
        )
        table = gr.Dataframe(
            value=schedule_table(),
            headers=["schedule", "t = 0", "t = T/4", "t = T/2", "t = 3T/4", "t = T-1"],
            label="alpha-bar_t: the fraction of the image's signal power left at step t",
            interactive=False,
        )
        steps.change(schedule_table_for, steps, table, api_name="schedule_table")
    return demo
