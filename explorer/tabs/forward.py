"""Forward process tab: noise a picture to any timestep and see x_t, its two parts, a strip over t, a histogram,
and two schedules side by side on the same picture and the same noise."""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from core.diffusion import q_sample
from core.imaging import to_uint8
from core.schedules import NoiseSchedule, make_schedule
from explorer.figures import histogram_figure
from explorer.images import ImageInputError, example_images, image_to_tensor, load_image
from explorer.tabs.schedules import SCHEDULE_CHOICES, parse_choice
from explorer.widgets import explanation, whole_number

NUM_TIMESTEPS = 1000
STRIP_LENGTH = 8
MAX_SEED = 2**31 - 1
WORKING_SIDE = 256  # pictures are noised at most 256 px on the long side so the slider stays live
MY_UPLOAD = "my upload"

INTRO = r"""
### The forward process
Diffusion models learn by watching pictures drown in noise. Pick a picture (or upload your own), a schedule and a
step $t$: the noisy version is $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon$, a fading copy
of the image plus growing Gaussian noise $\epsilon$. Pixel values run from -1 (black) to +1 (white).
"""


@functools.lru_cache(maxsize=16)
def cached_schedule(choice: str) -> NoiseSchedule:
    name, ztsnr = parse_choice(choice)
    return make_schedule(name, NUM_TIMESTEPS, zero_terminal_snr=ztsnr)


@functools.lru_cache(maxsize=8)
def _load_x0(path: str, mtime_ns: int, size: int) -> torch.Tensor:
    return image_to_tensor(load_image(path, max_side=WORKING_SIDE))  # (1, C, H, W)


def picture_tensor(choice: str, upload: str | None) -> torch.Tensor:
    """The chosen picture as x_0 [1, C, H, W] in [-1, 1]; cached per file so moving t does not re-read it."""
    if choice == MY_UPLOAD:
        if not upload:
            raise gr.Error("Upload a picture first, or pick one of the examples.")
        path = Path(upload)
    else:
        examples = example_images()
        if choice not in examples:
            raise gr.Error(f"unknown picture {choice!r}; choose one of {', '.join([*examples, MY_UPLOAD])}")
        path = examples[choice]
    try:
        stat = path.stat()
        return _load_x0(str(path), stat.st_mtime_ns, stat.st_size)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    except OSError as error:
        raise gr.Error("could not read this image: the file is missing or unreadable") from error


@functools.lru_cache(maxsize=8)
def cached_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def to_picture(x: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] in [-1, 1] -> uint8 [H, W] or [H, W, 3] for display (values beyond +-1 are clipped)."""
    array = to_uint8(x)[0]
    return array[..., 0] if array.shape[-1] == 1 else array


def nearest_log_snr_step(reference: NoiseSchedule, t: int, other: NoiseSchedule) -> int:
    """The t' of `other` whose log-SNR is closest to `reference`'s at t (same noise level, different schedule)."""
    target = reference.log_snr[t]
    distance = (other.log_snr - target).abs()
    distance[torch.isnan(distance)] = float("inf")
    return int(distance.argmin())


def forward_step(
    choice: str,
    upload: str | None,
    schedule_choice: str,
    t: float,
    seed: float,
    compare_choice: str,
    match_log_snr: bool,
) -> tuple:
    """Callback for everything that depends on t: x_t, its signal and noise parts, the histogram, the comparison."""
    t, seed = whole_number("t", t, 0, NUM_TIMESTEPS - 1), whole_number("the seed", seed, 0, MAX_SEED)
    x0 = picture_tensor(choice, upload)
    noise = cached_noise(seed, tuple(x0.shape))
    schedule = cached_schedule(schedule_choice)
    a = float(schedule.alphas_cumprod[t])
    signal, noise_part = a**0.5 * x0, (1 - a) ** 0.5 * noise
    x_t = q_sample(schedule, x0, t, noise)
    other = cached_schedule(compare_choice)
    t_other = nearest_log_snr_step(schedule, t, other) if match_log_snr else t
    x_other = q_sample(other, x0, t_other, noise)
    caption = (
        f"**{schedule_choice}** at t = {t}: alpha-bar = {a:.4f}, {a**0.5:.0%} of the image's amplitude left.  \n"
        f"**{compare_choice}** at t = {t_other}: alpha-bar = {float(other.alphas_cumprod[t_other]):.4f}, "
        f"{float(other.alphas_cumprod[t_other]) ** 0.5:.0%} left"
        + (" (the step with the nearest log-SNR)." if match_log_snr else " (the same t).")
    )
    return (
        to_picture(x_t),
        to_picture(signal),
        to_picture(noise_part),
        histogram_figure(x_t.numpy()),
        to_picture(x_t),
        to_picture(x_other),
        caption,
    )


def forward_strip(choice: str, upload: str | None, schedule_choice: str, seed: float) -> list[tuple]:
    """Callback: x_t at eight evenly spaced t, from the clean picture to the last step."""
    seed = whole_number("the seed", seed, 0, MAX_SEED)
    x0 = picture_tensor(choice, upload)
    noise = cached_noise(seed, tuple(x0.shape))
    schedule = cached_schedule(schedule_choice)
    steps = np.linspace(0, NUM_TIMESTEPS - 1, STRIP_LENGTH).round().astype(int).tolist()
    return [(to_picture(q_sample(schedule, x0, t, noise)), f"t = {t}") for t in steps]


def use_upload(upload: str | None) -> str | gr.Radio:
    """When a picture is uploaded, switch the picture choice to it."""
    return MY_UPLOAD if upload else gr.Radio()


def noised_picture(value: np.ndarray, label: str, alt_text: str) -> gr.Image:
    """One of the tab's pictures (x_t, its parts, the two schedules'), with what a screen reader says it shows."""
    return gr.Image(value, label=label, interactive=False, height=300, alt_text=alt_text)


def build_tab() -> dict[str, gr.components.Component]:
    """Layout and wiring of the Forward process tab. Returns the controls that choose the picture and its noise
    (picture, upload, schedule, t, seed), which the SDEdit section under it reads (explorer.tabs.sdedit)."""
    explanation(INTRO)
    names = [*example_images(), MY_UPLOAD]
    first = forward_step(names[0], None, "linear", 250, 0, "cosine", False)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            choice = gr.Radio(
                names, value=names[0], label="Picture", info="A bundled photo, or 'my upload' for your own file below."
            )
            upload = gr.File(
                elem_id="picture-upload",
                label="Your own picture (PNG, JPEG, GIF, BMP or WebP)",
                type="filepath",
                file_types=[".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"],
            )
            schedule = gr.Dropdown(
                list(SCHEDULE_CHOICES),
                value="linear",
                label="Schedule",
                info="How fast the noise grows (see the Schedules tab).",
            )
            t = gr.Slider(
                0,
                NUM_TIMESTEPS - 1,
                value=250,
                step=1,
                label="Timestep t",
                info="0 = the clean picture, 999 = (almost) pure noise. Drag it.",
            )
            seed = gr.Number(
                0,
                label="Noise seed",
                minimum=0,
                maximum=MAX_SEED,
                info="The same seed always gives the same noise pattern.",
            )
        with gr.Column(scale=3):
            with gr.Row():
                x_t_image = noised_picture(
                    first[0], "x_t: what the model sees", "x_t: the picture drowned in noise up to the chosen step t"
                )
                signal_image = noised_picture(
                    first[1],
                    "sqrt(alpha-bar) x_0: the fading picture",
                    "The picture scaled by sqrt(alpha-bar_t): what is left of it at step t",
                )
                noise_image = noised_picture(
                    first[2],
                    "sqrt(1 - alpha-bar) eps: the noise",
                    "The Gaussian noise scaled by sqrt(1 - alpha-bar_t): the noise mixed in at step t",
                )
            histogram = gr.Plot(first[3], label="Pixel values of x_t: they become a bell curve as t grows")
    strip = gr.Gallery(
        forward_strip(names[0], None, "linear", 0),
        label="x_t at eight evenly spaced steps, same noise throughout",
        columns=STRIP_LENGTH,
        height=220,
        object_fit="contain",
        allow_preview=False,
    )
    gr.Markdown("#### Two schedules, same picture, same noise")
    with gr.Row():
        compare = gr.Dropdown(
            list(SCHEDULE_CHOICES),
            value="cosine",
            label="Compare with",
            info="A second schedule, noising with the very same eps.",
        )
        match_log_snr = gr.Checkbox(
            False,
            label="Match the noise level (nearest log-SNR) instead of t",
            info="Off: both at the same t. On: the second at the step with equal SNR.",
        )
    with gr.Row():
        left = noised_picture(first[4], "First schedule", "x_t under the first schedule")
        right = noised_picture(first[5], "Second schedule", "x_t under the second schedule")
    caption = explanation(first[6])

    step_inputs = [choice, upload, schedule, t, seed, compare, match_log_snr]
    step_outputs = [x_t_image, signal_image, noise_image, histogram, left, right, caption]
    strip_inputs = [choice, upload, schedule, seed]
    upload.change(use_upload, upload, choice, api_name=False)
    gr.on(
        [control.change for control in step_inputs],
        forward_step,
        step_inputs,
        step_outputs,
        api_name="forward_step",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    gr.on(
        [control.change for control in strip_inputs],
        forward_strip,
        strip_inputs,
        strip,
        api_name="forward_strip",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    return {"picture": choice, "upload": upload, "schedule": schedule, "t": t, "seed": seed}
