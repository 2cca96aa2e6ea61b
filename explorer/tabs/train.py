"""Train tab: train a small diffusion model live and watch it learn.

Pick a dataset (the bundled digits by default, 2D toy sets, torchvision sets when the network allows, your own
pictures as a zip, or a 2D set you click on a canvas: explorer.tabs.drawing), a network size, schedule, objective,
length, batch, learning rate, EMA, seed and class conditioning, and in "Advanced" the schedule's parameters and the
loss's weighting (explorer.train_advanced; the
Schedules tab's "Train with this schedule" fills them in); press Start. While it runs the page shows the loss (raw
and smoothed), the loss by timestep bucket, the learning rate, the device, images/s and time to go, and a preview
sampled every few seconds from one fixed noise seed. When it ends (or Stop is pressed) the checkpoint can be
downloaded as a zip, the model appears in the Sample tab for this user only, and the run (its curves, samples
from one fixed noise and quality numbers; explorer.runs) in the Experiments tab. **Step** instead trains a model of
the user's own one optimizer step per press and shows that step (explorer.single_step).

`TrainTab` holds the callbacks (plain generator methods of their inputs, validated with gr.Error, the same from the
page, from gradio_client and from tests); the run itself is explorer.training_run.train_live.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from core.checkpoint_archive import pack_checkpoint
from core.data import DatasetError, dataset_kind
from core.diffusion import OBJECTIVES
from core.drawn_points import DRAWING
from core.image_files import ArchiveError, ImageInputError
from core.schedules import SCHEDULE_NAMES
from core.training import TrainConfig
from explorer.figures import bucket_loss_figure, loss_figure, lr_figure
from explorer.jobs import Job, run_job
from explorer.models import load_entry
from explorer.runs import record_run
from explorer.sessions import HEAVY_CONCURRENCY, HEAVY_GROUP, SessionRegistry, UserSession
from explorer.single_step import SingleStep
from explorer.step_pictures import SHOWN, TABLE_HEADERS
from explorer.tabs.drawing import DRAWING_LABEL, DrawingPanel
from explorer.train_advanced import advanced_group, advanced_settings
from explorer.training_run import LiveUpdate, OutOfMemory, status_line, train_live
from explorer.widgets import (
    LATEX_DELIMITERS,
    bounded_number,
    explanation,
    file_box,
    pixel_picture,
    session_key,
    whole_number,
)

DATASETS: dict[str, str] = {  # menu label -> core.data name
    "Digits: bundled MNIST (4,000 images, no download)": "mnist5k",  # each fits the menu at 1280 px
    "MNIST (60,000 digits, downloads 12 MB)": "mnist",
    "Fashion-MNIST (60,000 clothes, downloads 30 MB)": "fashion_mnist",
    "CIFAR-10 (50,000 colour photos, downloads 170 MB)": "cifar10",
    "My pictures (upload a .zip below)": "folder",
    "2D: two moons": "moons",
    "2D: swiss roll": "swiss_roll",
    "2D: eight Gaussians": "eight_gaussians",
    "2D: checkerboard": "checkerboard",
    "2D: spiral": "spiral",
    DRAWING_LABEL: DRAWING,
}
DEFAULT_DATASET = next(iter(DATASETS))
PRESETS = {"tiny (fast: digits in a minute on a CPU)": "tiny", "small": "small", "seed (the blog's 64-128-256)": "seed"}
LENGTH_UNITS = ("seconds", "steps")
DEFAULT_SECONDS = 60  # a run's length when the page opens (benchmarks/gpu_check.py times it to the race's goal)
MAX_SECONDS = 1800
MAX_STEPS = 100_000
MAX_BATCH = 512
MAX_SEED = 2**31 - 1
# the live recipe for pictures (core.training.TrainConfig) and for 2D points (assets/train_checkpoints.sh)
IMAGE_DEFAULTS = {"objective": "x0", "batch_size": 64, "lr": 2e-3}
POINT_DEFAULTS = {"objective": "eps", "batch_size": 256, "lr": 3e-3}
DEFAULT_CONFIG = TrainConfig()
STEP_CONCURRENCY = 8  # Step presses handled at once (each computes in turn on the compute worker)
STEP_HELP = "**Step** takes one optimizer step of a model of its own and shows it below; press again to continue."
STEP_CAPTION = "Rows: $x_0$, noise, $x_t$, prediction, its $x_0$; loss below"
STEP_INTRO = (
    "Press **Step** to train one update at a time and see all it used. The picture has one column per sample at "
    "its timestep t (2D sets: one panel per row): the clean $x_0$, the noise $\\epsilon$ drawn, the noisy $x_t$ the "
    "network sees, its prediction and the $x_0$ it implies; under each, its loss."
)

INTRO = r"""
### Train a diffusion model, live
Press **Start**: the network sees noisy pictures $x_t$ and learns to undo the noise. The preview on the right is
sampled every few seconds **from the same noise**, so you watch that noise turn into digits as the model learns.
On a plain 2-core CPU the default settings draw recognizable digits within about a minute.
"""


def training_config(
    *,
    dataset_label: str,
    upload: str | None,
    preset_label: str,
    schedule: str,
    objective: str,
    length_unit: str,
    length: float,
    batch_size: float,
    lr: float,
    ema_decay: float,
    seed: float,
    class_conditional: bool,
    **advanced: object,
) -> TrainConfig:
    """The page's controls (by the names `build_tab` gives them; `advanced`: the Advanced group's, see
    explorer.train_advanced.advanced_settings, each with its default) as a checked TrainConfig, or gr.Error naming
    the bad control or the combination that cannot be sampled. The one place that turns the Train tab's values into
    a config."""
    if dataset_label not in DATASETS:
        raise gr.Error(f"unknown dataset {dataset_label!r}; choose one from the menu")
    if preset_label not in PRESETS:
        raise gr.Error(f"unknown model size {preset_label!r}; choose one of {', '.join(PRESETS)}")
    if schedule not in SCHEDULE_NAMES:
        raise gr.Error(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
    if objective not in OBJECTIVES:
        raise gr.Error(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if length_unit not in LENGTH_UNITS:
        raise gr.Error(f"train for must be 'seconds' or 'steps', got {length_unit!r}")
    name = DATASETS[dataset_label]
    if name == "folder" and not upload:
        raise gr.Error("Upload a .zip of at least 8 pictures first (or pick another dataset).")
    if length_unit == "seconds":
        steps, budget = None, float(whole_number("training seconds", length, 1, MAX_SECONDS))
    else:
        steps, budget = whole_number("training steps", length, 1, MAX_STEPS), None
    config = TrainConfig(
        dataset=name,
        data_path=upload if name == "folder" else None,
        preset=PRESETS[preset_label],
        schedule=schedule,
        objective=objective,
        steps=steps,
        time_budget=budget,
        batch_size=whole_number("batch size", batch_size, 1, MAX_BATCH),
        lr=bounded_number("learning rate", lr, 0.0, 0.1, low_open=True),
        ema_decay=bounded_number("EMA decay", ema_decay, 0.0, 0.9999),
        seed=whole_number("seed", seed, 0, MAX_SEED),
        class_conditional=None if class_conditional else False,  # on: with the labels, where the dataset has them
        **advanced_settings(**advanced),
    )
    try:
        config.validate()  # e.g. beta_start above beta_end, or eps prediction with zero terminal SNR
    except ValueError as error:
        raise gr.Error(str(error)) from error
    return config


def default_training(length_unit: str = "seconds", length: float = DEFAULT_SECONDS) -> TrainConfig:
    """The run the Train tab starts with its controls untouched (the lesson's), for `length` seconds or steps:
    explorer/warm_up.py and benchmarks/ui_latency.py use it."""
    return training_config(
        dataset_label=DEFAULT_DATASET,
        upload=None,
        preset_label=next(iter(PRESETS)),
        schedule=DEFAULT_CONFIG.schedule,
        objective=DEFAULT_CONFIG.objective,
        length_unit=length_unit,
        length=length,
        batch_size=DEFAULT_CONFIG.batch_size,
        lr=DEFAULT_CONFIG.lr,
        ema_decay=DEFAULT_CONFIG.ema_decay,
        seed=0,
        class_conditional=True,
    )


def dataset_defaults(dataset_label: str) -> tuple:
    """When the dataset changes between pictures and 2D points, switch objective, batch and lr to what works
    for that kind (the user can still change them)."""
    name = DATASETS.get(dataset_label, "mnist5k")
    defaults = POINT_DEFAULTS if dataset_kind(name) == "points" else IMAGE_DEFAULTS
    return (
        gr.Radio(value=defaults["objective"]),
        gr.Number(value=defaults["batch_size"]),
        gr.Number(value=defaults["lr"]),
        gr.File(visible=name == "folder"),
    )


def _training_outputs(update: LiveUpdate, status: str, download: str | None = None) -> tuple:
    history = update.history
    plotted = history.plotted()
    return (
        status,
        update.preview,
        loss_figure(plotted["steps"], plotted["losses"], plotted["smoothed"]),
        bucket_loss_figure(
            history.last.bucket_losses if history.last else [None] * update.trainer.config.num_buckets,
            update.trainer.schedule.num_timesteps,
        ),
        lr_figure(plotted["steps"], plotted["lrs"]),
        download if download is not None else gr.update(),
    )


def _nothing_new(status: str) -> tuple:
    return (status, gr.update(), gr.update(), gr.update(), gr.update(), gr.update())


class TrainTab:
    """The Train tab's callbacks, bound to one SessionRegistry (which holds every user's runs and models)."""

    def __init__(self, registry: SessionRegistry):
        self.registry = registry
        self.single_step = SingleStep(registry)
        self.drawing = DrawingPanel(registry)

    def start(self, request: gr.Request | None = None, **controls: object) -> Iterator[tuple]:
        """Callback of Start, given the Train tab's controls by name (see `training_config`): yields (status,
        preview, loss plot, bucket plot, lr plot, checkpoint file)."""
        config = training_config(**controls)
        session = self.registry.session(session_key(request))
        config, data = self.drawing.training_input(config, session)  # the user's drawing, or None: by name

        def work(job: Job) -> Iterator[tuple]:
            loading = "Loading the data and building the model…"
            yield (loading, *(gr.update(),) * 4, None)  # None: the last run's checkpoint goes (its box hides)
            start = self.registry.compute_for("starting")
            live = train_live(
                config,
                dataset=data,
                compute=job.compute,
                stop=job.stopped,
                start_compute=start,
                check_memory=job.check_memory,
            )
            for update in live:
                if update.state == "starting":  # the first loss point follows at once (taken with the start): one
                    continue  # page update instead of two, which a class's sampling burst would make wait each
                if not update.done:
                    yield _training_outputs(update, status_line(update))
                    continue
                download, note = self._keep(session, update)
                _, kept = record_run(session.runs, update, job.compute) if not session.closed else (None, "")
                note += f"  \n{kept}" if kept else ""
                message = f"  \n{update.message}" if update.message else ""
                yield _training_outputs(update, status_line(update) + message + note, download)

        yield from run_job(
            self.registry,
            session,
            "training",
            work,
            waiting=_nothing_new,
            expected_errors=(DatasetError, ArchiveError, ImageInputError, OutOfMemory, ValueError),
        )

    def _keep(self, session: UserSession, update: LiveUpdate) -> tuple[str | None, str]:
        """Save the finished model in the user's folder, zip it for download, and add it to their Sample menu."""
        trainer = update.trainer
        if update.kept_steps == 0 or session.closed:
            return None, "  \nNo step was taken, so there is no model to keep."
        folder = trainer.save(session.new_path("model"), with_training_state=False)
        downloads = session.new_path("download")  # one folder per run, so the file's own name needs no counter
        downloads.mkdir(parents=True)
        archive = pack_checkpoint(folder, downloads / f"ddpm-{trainer.config.dataset}-{trainer.step}steps.zip")
        name = f"my model: {trainer.config.dataset}, {trainer.config.preset}, {trainer.step:,} steps"
        name = self.registry.add_model(session, name, load_entry(name, folder))
        return str(archive), f"  \nSaved. Download the checkpoint below; **{name}** is now in the Sample tab's menu."

    def step(self, request: gr.Request | None = None, **controls: object) -> tuple:
        """Callback of Step, given the same controls as Start: one optimizer step of this user's stepped model
        (explorer.single_step); returns (what the step did, its picture, its first samples' numbers, loss plot)."""
        config = training_config(**controls)
        session = self.registry.session(session_key(request))
        return self.single_step.step(session, *self.drawing.training_input(config, session)).outputs()

    def stop(self, request: gr.Request | None = None) -> str:
        """Callback of Stop: the run ends after its current step, and keeps what it learned."""
        session = self.registry.session(session_key(request))
        if self.registry.request_stop(session, "training"):
            return "Stopping after the current step…"
        return "Nothing to stop: no training run is going."


def build_tab(registry: SessionRegistry) -> TrainTab:
    """Layout and wiring of the Train tab."""
    tab = TrainTab(registry)
    explanation(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            dataset = gr.Dropdown(
                list(DATASETS),
                value=DEFAULT_DATASET,
                label="Dataset",
                info="What the model learns to draw. Downloads need internet; the bundled digits do not.",
            )
            upload = gr.File(
                label="Your pictures: a .zip of at least 8 (PNG, JPEG, GIF, BMP, WebP)",
                file_types=[".zip"],
                type="filepath",
                visible=False,
            )
            tab.drawing.build()
            preset = gr.Radio(
                list(PRESETS),
                value=next(iter(PRESETS)),
                label="Model size",
                info="Bigger networks learn more but train slower (see the U-Net tab).",
            )
            with gr.Row():
                schedule = gr.Dropdown(
                    list(SCHEDULE_NAMES),
                    value=DEFAULT_CONFIG.schedule,
                    label="Noise schedule",
                    info="How fast noise grows with t (Schedules tab).",
                )
                objective = gr.Radio(
                    list(OBJECTIVES),
                    value=DEFAULT_CONFIG.objective,
                    label="Objective",
                    info="What the network predicts: the noise (eps), the clean picture (x0) or v.",
                )
            with gr.Row():
                length_unit = gr.Radio(
                    list(LENGTH_UNITS),
                    value="seconds",
                    label="Train for",
                    info="Wall-clock seconds or optimizer steps.",
                )
                length = gr.Number(DEFAULT_SECONDS, label="How long", minimum=1, info="Seconds or steps, as chosen.")
            with gr.Row():
                batch_size = gr.Number(
                    DEFAULT_CONFIG.batch_size,
                    label="Batch size",
                    minimum=1,
                    maximum=MAX_BATCH,
                    info="Pictures per step.",
                )
                lr = gr.Number(DEFAULT_CONFIG.lr, label="Learning rate", minimum=0, maximum=0.1, info="Peak step size.")
            with gr.Row():
                ema = gr.Number(
                    DEFAULT_CONFIG.ema_decay,
                    label="EMA decay",
                    minimum=0,
                    maximum=0.9999,
                    info="Samples use a running average of the weights: smoother.",
                )
                seed = gr.Number(0, label="Seed", minimum=0, maximum=MAX_SEED, info="Same seed, same run.")
            conditional = gr.Checkbox(
                True,
                label="Class-conditional (for guidance)",
                info="Tell the model each picture's class (if the dataset has them): it learns faster, and you can "
                "ask for a digit later.",
            )
            tab.advanced, advanced = advanced_group()
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
                step = gr.Button("Step", elem_id="train-step")
            explanation(STEP_HELP)
        with gr.Column(scale=2):
            status = gr.Markdown("Press **Start training**.", elem_id="train-status")
            with gr.Row():
                preview = pixel_picture(
                    "Preview", "The same noise each time, denoised by the model so far.", 420, elem_id="train-preview"
                )
                loss_plot = gr.Plot(  # empty axes before Start: the page loads Plotly now, not on the first point
                    loss_figure([], [], []), label="Loss: how wrong the model's guesses are", elem_id="train-loss"
                )
            with gr.Row():
                bucket_plot = gr.Plot(label="Loss by timestep: very noisy (high t) and almost clean (low t)")
                lr_plot = gr.Plot(label="Learning rate: warm-up, then a slow decay")
            download = gr.File(  # shown when a run ends with a model to download
                label="Checkpoint (zip of safetensors + config.json)",
                interactive=False,
                visible=False,
                elem_id="train-download",
            )
            step_text = gr.Markdown(
                STEP_INTRO,
                latex_delimiters=LATEX_DELIMITERS,
                elem_id="train-step-text",
            )
            step_picture = pixel_picture("One training step", STEP_CAPTION, 560, elem_id="train-step-picture")
            step_table = gr.Dataframe(
                headers=list(TABLE_HEADERS),
                label=f"The step's first {SHOWN} samples: timestep t, alpha-bar_t (the share of signal left in x_t), "
                "the loss before and after the step",
                interactive=False,
                elem_id="train-step-table",
            )

    # kept: a shared link chains the settings it carries after the dataset's defaults (explorer/url_state.py)
    tab.dataset = dataset
    tab.dataset_event = dataset.change(dataset_defaults, dataset, [objective, batch_size, lr, upload], api_name=False)
    download.change(file_box, download, download, api_name=False, queue=False)
    tab.drawing.wire(dataset)
    controls = {  # the order of the API's parameters; the names are training_config's
        "dataset_label": dataset,
        "upload": upload,
        "preset_label": preset,
        "schedule": schedule,
        "objective": objective,
        "length_unit": length_unit,
        "length": length,
        "batch_size": batch_size,
        "lr": lr,
        "ema_decay": ema,
        "seed": seed,
        "class_conditional": conditional,
        **advanced,  # appended, each with a default, so scripts written before them still call /train
    }
    # what the Schedules tab's "Train with this schedule" sets (wired in explorer.app)
    carried = ("num_timesteps", "beta_start", "beta_end", "cosine_s", "zero_terminal_snr")
    tab.schedule_controls = {"schedule": schedule, "objective": objective, **{k: advanced[k] for k in carried}}
    tab.start_event = start.click(
        tab.start,
        inputs_kwargs=controls,
        outputs=[status, preview, loss_plot, bucket_plot, lr_plot, download],
        api_name="train",
        concurrency_id=HEAVY_GROUP,
        concurrency_limit=HEAVY_CONCURRENCY,
        show_progress="hidden",
    )
    stop.click(tab.stop, None, status, api_name="stop_training", concurrency_limit=None)
    step.click(
        tab.step,
        inputs_kwargs=controls,
        outputs=[step_text, step_picture, step_table, loss_plot],
        api_name="train_step",
        concurrency_limit=STEP_CONCURRENCY,
    )
    return tab
