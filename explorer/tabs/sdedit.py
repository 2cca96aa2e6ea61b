"""Noise, then denoise your own picture (SDEdit, Meng et al. 2021): a section of the Forward process tab.

The picture the tab noises (an example or an upload), or a digit drawn on the sketchpad, is fitted to a model's size
and channels, noised to the tab's t with the tab's seed and the model's own schedule (explorer.sdedit), and denoised
from there to t = 0 with the model's sampler, its recorded settings restricted to the levels below t
(core.sdedit.levels_from), or DDIM. The run goes through explorer.jobs.run_job like every heavy run, a step at a
time on the app's compute worker (explorer.sampling_run.run_sampling), and the page shows the result as it forms,
then every step as a strip. The models are the Sample tab's menu (explorer.tabs.model_choice), pictures only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import NamedTuple

import gradio as gr
import numpy as np
from PIL import Image

from core.image_files import ImageInputError
from explorer.images import grid_picture, load_image, tensor_to_image
from explorer.jobs import Job, run_job, throttled
from explorer.models import DEFAULT_MODEL, PRETRAINED, PRETRAINED_DIR, ModelEntry
from explorer.sampling_run import SamplerSettings, check_settings, run_sampling
from explorer.sdedit import NoisedStart, fit_picture, noised_start
from explorer.sessions import HEAVY_CONCURRENCY, HEAVY_GROUP, SessionRegistry, UserSession
from explorer.tabs.forward import MAX_SEED, NUM_TIMESTEPS, cached_schedule, picture_tensor
from explorer.tabs.model_choice import ModelChoice
from explorer.tabs.sample import FRAME_INTERVAL
from explorer.trajectory import CLEAN, Trajectory, format_t
from explorer.widgets import explanation, pixel_picture, progress_html, whole_number

FROM_PICTURE = "the picture above"
FROM_DRAWING = "my drawing"
MODEL_SAMPLER = "the model's own"
DDIM_SAMPLER = "DDIM, 50 steps"
DDIM_STEPS = 50
CANVAS = 280  # the sketchpad's side in pixels: 10x a digit model's 28
BRUSH = 22  # pixels: about MNIST's stroke width once shrunk to 28x28
INK = 16  # a drawing whose brightest pixel is darker than this is empty
FRAME = 28 / 20  # MNIST's framing: each digit fitted into the middle 20x20 pixels of 28x28

INTRO = r"""
#### Now denoise it (SDEdit)
Noise a picture to $t$ as above, then let a model run the reverse process from that $x_t$ down to $t = 0$ (Meng et
al. 2021, *SDEdit*). **A small $t$ keeps the picture; a large $t$ keeps only its rough layout, and the model fills
in the rest in its own style: a scribble becomes a digit.** The digit models learned white digits on black, 28x28:
draw one below, or give them any picture and see what they make of it.
"""


class SDEditInput(NamedTuple):
    """A checked SDEdit request: the model, its sampler settings, where the run starts and the seed."""

    entry: ModelEntry
    settings: SamplerSettings
    start: NoisedStart
    seed: int


def drawing_picture(sketch: dict | None) -> Image.Image:
    """The sketchpad's drawing (its composite) as a grey picture, read by the safe loader, framed as MNIST frames
    its digits: cropped to the ink, in the middle 20/28 of a black square. gr.Error when nothing is drawn."""
    composite = (sketch or {}).get("composite")
    if composite is None:
        raise gr.Error(f"Draw a digit on the sketchpad first, or start from {FROM_PICTURE!r}.")
    try:
        image = load_image(np.asarray(composite), max_side=CANVAS)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    image = image.convert("L")
    if image.getextrema()[1] < INK:
        raise gr.Error(f"The sketchpad is empty: draw a digit (white on black) first, or start from {FROM_PICTURE!r}.")
    ink = image.crop(image.point(lambda v: 255 if v >= INK else 0).getbbox())
    side = round(max(ink.size) * FRAME)
    framed = Image.new("L", (side, side), 0)
    framed.paste(ink, ((side - ink.width) // 2, (side - ink.height) // 2))
    return framed


def sampler_settings(entry: ModelEntry, choice: str) -> SamplerSettings:
    """The model's recorded sampler settings, or deterministic DDIM with 50 steps (at most T); ValueError if the
    model's schedule cannot run them."""
    if choice == MODEL_SAMPLER:
        own = entry.sampling_defaults
        return check_settings(entry, own.sampler, own.steps, own.eta, own.spacing)
    if choice == DDIM_SAMPLER:
        steps = min(DDIM_STEPS, entry.checkpoint.schedule.num_timesteps)
        return check_settings(entry, "ddim", steps, 0.0, entry.sampling_defaults.spacing)
    raise ValueError(f"sampler must be {MODEL_SAMPLER!r} or {DDIM_SAMPLER!r}, got {choice!r}")


def schedule_note(entry: ModelEntry, start: NoisedStart, forward_schedule: str) -> str:
    """Which schedule decided x_t, and how its noise level compares with the picture's above."""
    schedule = entry.checkpoint.schedule
    name = entry.checkpoint.config.get("schedule", {}).get("name", "?")
    a = schedule.alpha_bar(start.t)
    above = float(cached_schedule(forward_schedule).alphas_cumprod[start.t])
    channels, height, width = entry.checkpoint.sample_shape
    if abs(a - above) < 1e-6:
        compared = "the same noise level as the picture above"
    else:
        compared = f"the picture above, on the {forward_schedule} schedule, has alpha-bar {above:.3f}"
    return (
        f"x_t is noised with the model's own schedule ({name}, T = {schedule.num_timesteps}): alpha-bar = {a:.3f} at "
        f"t = {start.t}, {a**0.5:.0%} of the picture's amplitude left; {compared}. The noise comes from the tab's "
        f"seed, drawn at the model's size ({width}x{height} {'grey' if channels == 1 else 'RGB'})."
    )


def frames(trajectory: Trajectory, start: NoisedStart) -> list[tuple[np.ndarray, str]]:
    """The run as a strip: x_t at the start, then the state after every saved step, the last one the result."""
    strip = [(grid_picture(start.x_t.cpu()), f"start: x_t at t = {start.t}")]
    for i in range(len(trajectory)):
        t_prev = trajectory.t_prev_saved[i]
        caption = "the result (t = 0)" if t_prev == CLEAN else f"t = {format_t(t_prev)}"
        strip.append((trajectory.pictures(i)[0], caption))
    return strip


class SDEditSection(ModelChoice):
    """The section's callbacks, bound to the app's SessionRegistry; the model menu is the Sample tab's, pictures
    only."""

    def model_names(self, session: UserSession) -> list[str]:
        own = [name for name, entry in session.models.items() if not entry.is_points]
        return [*shipped_picture_models(), *own]  # the shipped ones by their configs: none is loaded to list it

    def checked(
        self,
        session: UserSession,
        *,
        model: str,
        sampler: str,
        source: str,
        picture: str,
        upload: str | None,
        sketch: dict | None,
        t: float,
        seed: float,
    ) -> SDEditInput:
        """The section's controls as a checked request, or gr.Error naming what is wrong."""
        entry = self.resolve(model, session)
        if entry.is_points:
            raise gr.Error(f"{model} draws 2D points, not pictures: choose a picture model for SDEdit.")
        t = whole_number("t", t, 0, NUM_TIMESTEPS - 1)
        seed = whole_number("the seed", seed, 0, MAX_SEED)
        if source == FROM_DRAWING:
            image = drawing_picture(sketch)
        elif source == FROM_PICTURE:
            image = tensor_to_image(picture_tensor(picture, upload))
        else:
            raise gr.Error(f"start from {FROM_PICTURE!r} or {FROM_DRAWING!r}, not {source!r}")
        try:
            x0 = fit_picture(image, entry.checkpoint.sample_shape)
            return SDEditInput(entry, sampler_settings(entry, sampler), noised_start(entry, x0, t, seed), seed)
        except ValueError as error:
            raise gr.Error(str(error)) from None

    def run(self, request: gr.Request | None = None, *, schedule: str, **controls: object) -> Iterator[tuple]:
        """Callback of "Denoise from t": yields (progress, x_0, x_t, the result so far, the strip, the note) live
        at every step (at most 20 a second), then the finished run and every step of it."""
        session = self.user_session(request)
        checked = self.checked(session, **controls)
        entry, start = checked.entry, checked.start
        original, noisy = grid_picture(start.x0.cpu()), grid_picture(start.x_t.cpu())
        note = schedule_note(entry, start, schedule)

        def work(job: Job) -> Iterator[tuple]:
            run = run_sampling(
                entry, checked.settings, start.x_t, seed=checked.seed, compute=job.compute, stop=job.stopped,
                start_t=start.t,
            )  # fmt: skip
            trajectory = None
            for step, trajectory in throttled(run, FRAME_INTERVAL, always=lambda item: item[0].t_prev == CLEAN):
                text = f"{trajectory.title}: {trajectory.call_name(step.index)}, t = {format_t(step.t)}"
                done = len(trajectory.timesteps)
                live = grid_picture(step.x_t.cpu())
                yield progress_html(done, trajectory.num_calls, text), original, noisy, live, [], note
            if trajectory is None or not trajectory.complete:
                yield progress_html(0, 1, "Stopped before the result formed."), original, noisy, None, [], note
                return
            text = f"{trajectory.title}, in {trajectory.seconds:.2f} s. The strip shows every step."
            result = grid_picture(trajectory.final)
            yield progress_html(1, 1, text), original, noisy, result, frames(trajectory, start), note

        yield from run_job(
            self.registry,
            session,
            "sampling",
            work,
            waiting=lambda text: (progress_html(0, 1, text), original, noisy, None, [], note),
            expected_errors=(ValueError,),
        )


@functools.cache
def shipped_picture_models() -> list[str]:
    """Menu names of the shipped checkpoints that draw pictures, read from their config.json (loading them here
    would add seconds to the app's start)."""
    names = []
    for folder, name in PRETRAINED.items():
        config = PRETRAINED_DIR / folder / "config.json"
        if config.is_file() and json.loads(config.read_text()).get("dataset", {}).get("kind") == "images":
            names.append(name)
    return names


def build_section(registry: SessionRegistry, forward: dict[str, gr.components.Component]) -> SDEditSection:
    """Layout and wiring of the SDEdit section, under the Forward process tab whose controls (by the names of
    SDEditSection.checked: picture, upload, t, seed, and schedule) it reads. Returns the callbacks object; its
    `model` menu is refreshed by the app when the tab is opened."""
    section = SDEditSection(registry)
    explanation(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = gr.Dropdown(
                list(shipped_picture_models()),
                value=DEFAULT_MODEL,
                label="Model",
                allow_custom_value=True,
                info="The Sample tab's picture models: the digit ones, yours, uploads and Hub models.",
                elem_id="sdedit-model",
            )
            sampler = gr.Radio(
                [MODEL_SAMPLER, DDIM_SAMPLER],
                value=MODEL_SAMPLER,
                label="Sampler",
                info="The model's own settings (only its steps below t), or DDIM: no fresh noise on the way.",
            )
            source = gr.Radio(
                [FROM_PICTURE, FROM_DRAWING],
                value=FROM_PICTURE,
                label="Start from",
                info="The picture the tab noises above, or what you draw on the sketchpad below.",
                elem_id="sdedit-source",
            )
            sketch = gr.Sketchpad(
                np.zeros((CANVAS, CANVAS, 3), dtype=np.uint8),
                label="Draw a digit here",
                image_mode="L",
                type="numpy",
                canvas_size=(CANVAS, CANVAS),
                fixed_canvas=True,
                brush=gr.Brush(default_size=BRUSH, colors=["#ffffff"], default_color="#ffffff", color_mode="fixed"),
                layers=False,
                transforms=(),
                elem_id="sdedit-sketch",
            )
            explanation("White on black, as the digit models learned; it is centred and shrunk as their digits were.")
            run = gr.Button("Denoise from t", variant="primary", elem_id="sdedit-run")
            explanation("Uses the tab's t and seed above. Try t = 300, 500 and 700 on the same picture.")
        with gr.Column(scale=2):
            progress = gr.HTML(progress_html(0, 1, "Press **Denoise from t**."), elem_id="sdedit-progress")
            with gr.Row():
                original = pixel_picture("x_0: the start", "The picture at the model's size and colours.", 280)
                noisy = pixel_picture("x_t: noised to t", "What the reverse process starts from.", 280)
                result = pixel_picture(
                    "the result", "The denoised picture, forming step by step.", 280, elem_id="sdedit-result"
                )
            strip = gr.Gallery(
                label="Every step of the run, from x_t to the result",
                columns=8,
                height=200,
                object_fit="contain",
                allow_preview=False,
                elem_id="sdedit-strip",
            )
            note = gr.Markdown(elem_id="sdedit-note")

    section.model = model
    controls = {"model": model, "sampler": sampler, "source": source, "sketch": sketch, **forward}
    run.click(
        section.run,
        inputs_kwargs=controls,
        outputs=[progress, original, noisy, result, strip, note],
        api_name="sdedit",
        concurrency_id=HEAVY_GROUP,
        concurrency_limit=HEAVY_CONCURRENCY,
        show_progress="hidden",
    )
    return section
