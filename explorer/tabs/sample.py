"""Sample tab: draw samples step by step from a pretrained model, your own, or a diffusers model, with any of the
samplers and timestep spacings, scrub through the reverse process and export it as a GIF (choosing and adding models
is explorer.tabs.model_choice; comparing two samplers from the same starting noise is explorer.tabs.compare, a
section below; the quality-vs-network-calls chart is explorer.tabs.quality, another).

`SampleTab` holds the callbacks (generators for the long ones, validated with gr.Error; the same from the page,
from gradio_client and from tests). The runs are explorer.sampling_run's; what is kept for scrubbing is the
session's explorer.trajectory.Trajectory.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import gradio as gr

from core.sampler_base import Step
from core.samplers import DEFAULT_GUIDANCE, SamplingDefaults
from explorer.figures import class_histogram_figure
from explorer.jobs import Job, run_job, throttled
from explorer.merged_calls import MergedCalls
from explorer.models import DEFAULT_MODEL, ModelEntry, pretrained, pretrained_names
from explorer.sampling_figures import paths_figure, shared_visited_timesteps_figure
from explorer.sampling_run import (
    EACH_CLASS,
    MAX_GUIDANCE,
    MAX_POINTS,
    MAX_SEED,
    SampleRequest,
    check_request,
    memory_need,
    sample_request,
)
from explorer.scoring import score, score_markdown
from explorer.sessions import HEAVY_CONCURRENCY, HEAVY_GROUP, SessionRegistry, UserSession
from explorer.tabs.denoiser_field import FieldView
from explorer.tabs.guidance import GuidanceViews
from explorer.tabs.model_choice import (
    DEFAULT_IMAGES,
    EACH_CLASS_CHOICE,
    NO_CLASS_CHOICE,
    ModelChoice,
    build_model_sources,
)
from explorer.tabs.sampler_controls import build_sampler_controls
from explorer.trajectory import Trajectory, format_t, step_pictures
from explorer.widgets import explanation, file_box, pixel_picture, progress_html, whole_number

REPLAY_LABEL = "Replay the run, step by step"
FRAME_INTERVAL = 0.05  # at most 20 live page updates a second for one user; the last step is always shown
SERVER_FRAMES = 15  # live page updates a second for all sampling users together: 30 at once get one each 2 s

INTRO = r"""
### Sample: from noise to a picture, one step at a time
Start from pure noise $x_T$ and let the model remove a little noise at every step. Left: the current $x_t$;
then the model's guess of the finished picture $\hat x_0$; then the noise it thinks is in $x_t$; and, for a
class-conditional model with guidance, what the class adds to that guess. After a run, drag the slider to replay
any step, or save the whole process as a GIF. Every step costs one call of the network (Heun's cost two): the fewer
calls a sampler needs for good pictures, the faster it is.
"""


class LiveFrame:
    """One network call of a sampling run as the page shows it: the step, the run's trajectory so far, and the
    step's three pictures, drawn once however many users follow the run (explorer.shared_runs)."""

    def __init__(self, step: Step, trajectory: Trajectory, entry: ModelEntry) -> None:
        self.step, self.trajectory, self._entry = step, trajectory, entry
        self._pictures: tuple | None = None

    @property
    def pictures(self) -> tuple:
        # no lock (functools.cached_property's, in Python 3.11, is one for all frames of all users): two followers
        # asking at the same moment may both draw them, which is cheap and gives the same pictures
        if self._pictures is None:
            self._pictures = step_pictures(self.step, self._entry.is_points, self._entry.reference_points)
        return self._pictures


def live_frames(entry: ModelEntry, request: SampleRequest, merged: MergedCalls) -> Iterator[LiveFrame]:
    """The Sample tab's run of a checked request, a LiveFrame per network call, its network calls merged with
    other users' runs of the same model (explorer.merged_calls)."""
    for step, trajectory in sample_request(entry, request, merged=merged):
        yield LiveFrame(step, trajectory, entry)


def sharing_key(entry: ModelEntry, request: SampleRequest) -> tuple | None:
    """Which requests share one run: the same shipped model and the same checked request (sampler, steps, eta,
    spacing, seed, count, class, guidance). None (never shared) for a user's own model."""
    return (entry.name, request) if entry.shipped else None


def parse_class(entry: ModelEntry, choice: str | None) -> int | None:
    if entry.num_classes is None or choice in (None, "", NO_CLASS_CHOICE):
        return None
    if choice == EACH_CLASS_CHOICE:
        return EACH_CLASS
    return whole_number("class", choice, 0, entry.num_classes - 1)


class SampleTab(ModelChoice):
    """The Sample tab's callbacks, bound to one SessionRegistry (choosing and adding models: ModelChoice)."""

    # ---- sampling -------------------------------------------------------------------------------------------

    def checked_request(
        self,
        session: UserSession,
        *,
        model: str,
        sampler: str,
        steps: float,
        eta: float,
        seed: float,
        count: float,
        class_choice: str | None,
        guidance: float,
        spacing: str | None = None,
    ) -> tuple[ModelEntry, SampleRequest]:
        """The Sample tab's main controls (by the names `build_tab` gives them) as a model and a checked request, or
        gr.Error naming the bad control. The one place that turns those values into a request. spacing None: the
        one the model records."""
        entry = self.resolve(model, session)
        label = parse_class(entry, class_choice)
        try:
            request = check_request(entry, sampler, steps, eta, seed, count, label, guidance, spacing)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return entry, request

    def sample(self, request: gr.Request | None = None, **controls: object) -> Iterator[tuple]:
        """Callback of Sample, given the main controls by name (see `checked_request`): yields (progress, x_t, predicted
        x0, predicted noise, replay slider, step caption, alpha-bar plot, paths plot) live at every network call (at
        most 20 a second), then the finished run, ready to scrub."""
        session = self.user_session(request)
        entry, checked = self.checked_request(session, **controls)
        total = checked.settings.calls
        keep = (gr.update(),) * 7

        def work(job: Job) -> Iterator[tuple]:
            frame = None
            start = functools.partial(live_frames, entry, checked, self.registry.merged_calls)
            frames = self.registry.shared_runs.follow(sharing_key(entry, checked), start, stop=job.stopped)
            shown = throttled(frames, self.frame_interval, always=lambda frame: frame.step.index + 1 == total)
            for frame in shown:
                text = f"{checked.settings.title}: {frame.trajectory.call_name(frame.step.index)}"
                text += f", t = {format_t(frame.step.t)}"
                update = (*frame.pictures, gr.update(), text, gr.update(), gr.update())
                yield progress_html(frame.step.index + 1, total, text), *update
            if frame is None:
                yield (progress_html(0, total, "Stopped before the first step."), *keep)
                return
            trajectory = frame.trajectory if frame.trajectory.complete else frame.trajectory.snapshot()
            session.trajectory = trajectory
            yield self._finished(trajectory, entry, checked)

        yield from run_job(
            self.registry,
            session,
            "sampling",
            work,
            waiting=lambda text: (progress_html(0, total, text), *keep),
            memory=lambda: memory_need(entry, checked),  # checked against the run's share of a GPU
        )

    def frame_interval(self) -> float:
        """Seconds between one user's live frames: FRAME_INTERVAL, longer while many sample at once (SERVER_FRAMES
        a second for all of them: a picture costs the server its encoding and sending, per user)."""
        return max(FRAME_INTERVAL, self.registry.active("sampling") / SERVER_FRAMES)

    def _finished(self, trajectory: Trajectory, entry: ModelEntry, checked: SampleRequest) -> tuple:
        done = len(trajectory.timesteps)
        last = len(trajectory) - 1
        per_call = f"{1000 * trajectory.seconds / max(done, 1):.1f} ms each"
        if trajectory.complete:
            steps = trajectory.num_steps
            ran = f"{steps} of {steps} steps in {trajectory.seconds:.2f} s ({done} network calls, {per_call})"
        else:
            ran = f"stopped after {done} of {trajectory.num_calls} network calls"
            ran += f" ({trajectory.seconds:.2f} s, {per_call})"
        text = f"{trajectory.title}: {ran}. Drag the slider to replay any step."
        return (
            progress_html(done, trajectory.num_calls, text),
            *trajectory.pictures(last),
            gr.Slider(0, max(last, 1), value=last, step=1, interactive=last > 0, label=REPLAY_LABEL),
            trajectory.caption(last),
            shared_visited_timesteps_figure(trajectory.schedule, trajectory.timesteps, trajectory.t_saved[last]),
            paths_figure(trajectory.paths(), trajectory.reference) if entry.is_points else gr.update(),
        )

    def show_step(self, index: float, request: gr.Request | None = None) -> tuple:
        """Callback of the replay slider: the three pictures, the caption and the alpha-bar marker of saved step
        `index` (0 = the first step)."""
        trajectory = self.user_session(request).trajectory
        if trajectory is None or len(trajectory) == 0:
            raise gr.Error("Sample first: there is no run to replay yet.")
        i = whole_number("step", index, 0, len(trajectory) - 1)
        return (
            *trajectory.pictures(i),
            trajectory.caption(i),
            shared_visited_timesteps_figure(trajectory.schedule, trajectory.timesteps, trajectory.t_saved[i]),
        )

    def export_gif(self, request: gr.Request | None = None) -> str:
        """Callback of "Make a GIF": the last run, one frame per saved step, as a file to download."""
        session = self.user_session(request)
        trajectory = session.trajectory
        if trajectory is None or len(trajectory) == 0:
            raise gr.Error("Sample first: there is no run to turn into a GIF yet.")
        return str(trajectory.write_gif(session.new_path("trajectory", ".gif")))

    def score(self, request: gr.Request | None = None) -> Iterator[tuple]:
        """Callback of "Score these samples": the last finished run's samples scored on the compute worker (about
        a second), yielding (the reading and its table, the class histogram or, for 2D sets, nothing)."""
        session = self.user_session(request)
        trajectory = session.trajectory
        if trajectory is None or trajectory.final is None:
            raise gr.Error("Sample first, and let the run finish: only finished samples can be scored.")

        def work(job: Job) -> Iterator[tuple]:
            scores = job.compute(lambda: score(trajectory.final, trajectory.dataset))
            histogram = scores.get("class_histogram")
            plot = gr.Plot(class_histogram_figure(histogram), visible=True) if histogram else gr.Plot(visible=False)
            yield score_markdown(scores), plot

        yield from run_job(
            self.registry,
            session,
            "sampling",
            work,
            waiting=lambda text: (text, gr.update()),
            expected_errors=(ValueError,),
        )

    def stop(self, request: gr.Request | None = None) -> str:
        session = self.user_session(request)
        if self.registry.request_stop(session, "sampling"):
            return progress_html(0, 1, "Stopping after the current step…")
        return progress_html(0, 1, "Nothing to stop: no sampling run is going.")


def build_tab(registry: SessionRegistry) -> SampleTab:
    """Layout and wiring of the Sample tab. Returns the callbacks object (its `model` dropdown is refreshed by the
    app when the Train tab adds a model)."""
    tab = SampleTab(registry)
    explanation(INTRO)
    default = pretrained(DEFAULT_MODEL)
    start = default.sampling_defaults if default else SamplingDefaults()  # the default model's own settings
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            model = gr.Dropdown(
                pretrained_names(),
                value=DEFAULT_MODEL,
                label="Model",
                allow_custom_value=True,
                info="A pretrained model, one you trained (Train tab), or one uploaded or from the Hub (below).",
                elem_id="sample-model",
            )
            about = gr.Markdown(default.describe() if default else "")
            sampler_controls = build_sampler_controls(start, elem_prefix="sample")
            with gr.Row():
                seed = gr.Number(0, label="Seed", minimum=0, maximum=MAX_SEED, info="Picks x_T.")
                count = gr.Slider(1, MAX_POINTS, value=DEFAULT_IMAGES, step=1, label="Number of images")
            with gr.Group():
                class_menu = gr.Dropdown(
                    [NO_CLASS_CHOICE],
                    value=NO_CLASS_CHOICE,
                    label="Class",
                    info="For class-conditional models: which digit to draw.",
                    interactive=False,
                )
                guidance = gr.Slider(
                    0,
                    MAX_GUIDANCE,
                    value=DEFAULT_GUIDANCE,
                    step=0.5,
                    label="Guidance scale",
                    interactive=False,
                    info="1: plain; >1 pushes harder toward the class (clearer, less varied).",
                )
            with gr.Row():
                run = gr.Button("Sample", variant="primary", elem_id="sample-run")
                stop = gr.Button("Stop", variant="stop", elem_id="sample-stop")
            build_model_sources(tab, model)
        with gr.Column(scale=2):
            progress = gr.HTML(progress_html(0, 1, "Press **Sample**."), elem_id="sample-progress")
            with gr.Row():
                x_t = pixel_picture("x_t", "The noisy state at this step.", 340, elem_id="sample-xt")
                x0 = pixel_picture("predicted x0", "The model's guess of the finished picture.", 340)
                eps = pixel_picture("predicted noise", "The noise it sees in $x_t$ (grey 0, white +3σ).", 340)
                guidance_views = GuidanceViews(tab)
                guidance_views.build_direction()
            scrub = gr.Slider(
                0,
                1,
                value=0,
                step=1,
                label=REPLAY_LABEL,
                interactive=False,
                elem_id="sample-scrub",
                info="After a run: drag to see any step again (left = pure noise, right = the finished sample).",
            )
            step_caption = gr.Markdown(elem_id="sample-step-caption")
            visited = gr.Plot(label="The timesteps the sampler visited, on the alpha-bar curve")
            paths = gr.Plot(
                label="2D models: each sample's path from noise to the data", visible=False, elem_id="sample-paths"
            )
            field_view = FieldView(tab)
            field_view.build()
            with gr.Row():
                gif_button = gr.Button("Make a GIF of this run", elem_id="sample-gif")
                gif = gr.File(label="GIF: x_t and predicted x0 at every saved step", interactive=False, visible=False)
            with gr.Row():
                score_button = gr.Button("Score these samples", elem_id="sample-score")
                explanation(
                    "How close are they to real data? One sentence, then each number beside what real data scores."
                )
            score_text = gr.Markdown(elem_id="sample-score-text")
            histogram = gr.Plot(label="The digits the reference classifier reads in the samples", visible=False)

    tab.model, tab.count, tab.start, tab.sampler_controls = model, count, start, sampler_controls
    tab.controls = {  # the order of the API's parameters; the names are SampleTab.checked_request's
        "model": model,
        "sampler": sampler_controls.sampler,
        "steps": sampler_controls.steps,
        "eta": sampler_controls.eta,
        "seed": seed,
        "count": count,
        "class_choice": class_menu,
        "guidance": guidance,
    }
    # parameters added since: each endpoint takes them after its own, with defaults, so older calls still work
    tab.later_controls = {"spacing": sampler_controls.spacing}
    described = [about, sampler_controls.sampler, sampler_controls.steps, sampler_controls.eta, class_menu, guidance]
    described += [count, paths, sampler_controls.spacing]
    # kept: a shared link chains the settings it carries after the model's own (explorer/url_state.py)
    tab.described = model.change(tab.describe_model, model, described, api_name="describe_model")
    sampled = run.click(
        tab.sample,
        inputs_kwargs={**tab.controls, **tab.later_controls},
        outputs=[progress, x_t, x0, eps, scrub, step_caption, visited, paths],
        api_name="sample",
        concurrency_id=HEAVY_GROUP,
        concurrency_limit=HEAVY_CONCURRENCY,
        show_progress="hidden",
    )
    stop.click(tab.stop, None, progress, api_name="stop_sampling", concurrency_limit=None)
    scrub.input(
        tab.show_step,
        scrub,
        [x_t, x0, eps, step_caption, visited],
        api_name="show_step",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    gif_button.click(tab.export_gif, None, gif, api_name="export_gif")
    gif.change(file_box, gif, gif, api_name=False, queue=False)
    score_button.click(
        tab.score,
        None,
        [score_text, histogram],
        api_name="score_samples",
        concurrency_id=HEAVY_GROUP,
        concurrency_limit=HEAVY_CONCURRENCY,
    )
    guidance_views.wire_direction(model, run, sampled, scrub)
    field_view.wire(model, sampled, scrub)
    guidance_views.build_sweep()  # its section, under the main run
    return tab
