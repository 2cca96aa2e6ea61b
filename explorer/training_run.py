"""Live training for the Train tab: a core Trainer driven step by step, its history (loss, smoothed loss, learning
rate, loss by timestep bucket), and a preview sampled every few seconds from one fixed noise seed, so students
watch the same noise turn into digits (or, for 2D sets, the same points settle onto the data).

`train_live` yields a `LiveUpdate` at the start (within a second: the preview's fixed noise x_T), then at most
every `render_interval` seconds, with a fresh preview every `preview_interval` seconds, and once at the end
(finished, stopped, or diverged with the last finite weights kept). Every training step and preview runs through
`compute` (the app's one compute thread, explorer.compute_worker.ComputeWorker; by default the caller's own thread);
`stop()` is checked between steps.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from torch import Tensor

from core.data import ImageDataset
from core.device import pick_device
from core.sampler_base import draw_noise
from core.samplers import DEFAULT_SPACING, each_class, make_sampler, sample
from core.toy_data import PointDataset
from core.training import ProgressRecord, TrainConfig, Trainer, TrainingDiverged, load_training_data
from explorer.gpu_memory import Need, is_out_of_memory, training_need
from explorer.images import grid_picture, points_picture
from explorer.zero_gpu import StopFile, gpu_stream, task_device, training_seconds, zero_gpu_active

PREVIEW_IMAGES = 16
PREVIEW_POINTS = 1000
# the preview's sampler: deterministic (the picture changes only because the model does) and cheap: DPM-Solver++(2M)
# on trailing timesteps (core.samplers.DEFAULT_SPACING)
PREVIEW_SAMPLER = "dpmpp_2m"
PREVIEW_STEPS = 8  # network calls
PREVIEW_SEED = 1234
PREVIEW_INTERVAL = 3.0  # seconds between previews
RENDER_INTERVAL = 1.0  # seconds between page updates
SMOOTHING = 0.97  # exponential moving average of the loss, bias-corrected
MAX_PLOTTED = 1500  # points per curve sent to the page
REFERENCE_POINTS = 2000


@dataclass
class TrainingHistory:
    """Per-step loss and learning rate, the smoothed loss, and the latest record."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    last: ProgressRecord | None = None
    _average: float = 0.0

    def add(self, record: ProgressRecord) -> None:
        self.steps.append(record.step)
        self.losses.append(record.loss)
        self.lrs.append(record.lr)
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * record.loss
        self.smoothed.append(self._average / (1 - SMOOTHING ** len(self.losses)))
        self.last = record

    def __len__(self) -> int:
        return len(self.steps)

    def plotted(self, max_points: int = MAX_PLOTTED) -> dict[str, np.ndarray]:
        """steps, losses, smoothed and lrs thinned to at most max_points evenly spaced entries (the last kept)."""
        count = len(self.steps)
        keep = np.unique(np.linspace(0, count - 1, min(count, max_points)).round().astype(np.int64))
        return {
            name: np.asarray(getattr(self, name), dtype=np.float64)[keep]
            for name in ("steps", "losses", "smoothed", "lrs")
        }


class Preview:
    """Samples of the EMA model from one fixed x_T, drawn with PREVIEW_STEPS calls of the deterministic
    PREVIEW_SAMPLER: `count` of them (by default PREVIEW_POINTS or PREVIEW_IMAGES) from the noise of `seed`."""

    def __init__(self, trainer: Trainer, count: int | None = None, seed: int = PREVIEW_SEED):
        self.trainer = trainer
        data = trainer.data
        self.is_points = data.kind == "points"
        count = count or (PREVIEW_POINTS if self.is_points else PREVIEW_IMAGES)
        shape = (count, data.dim) if self.is_points else (count, data.channels, data.image_size, data.image_size)
        generator = torch.Generator().manual_seed(seed)
        self.x_T = draw_noise(shape, generator, trainer.device, torch.float32)
        self.labels = each_class(data.num_classes if trainer.config.class_conditional else None, count, trainer.device)
        self.reference = data.tensor[:REFERENCE_POINTS].cpu() if self.is_points else None
        self.sampler = make_sampler(
            PREVIEW_SAMPLER,
            trainer.schedule,
            objective=trainer.config.objective,
            clip_x0=True,  # pixels and the 2D toy sets both live in [-1, 1]
            spacing=DEFAULT_SPACING,
        )

    def samples(self) -> Tensor:
        """The EMA model's samples from the fixed x_T (float32, on the CPU)."""
        steps = min(PREVIEW_STEPS, self.trainer.schedule.num_timesteps)
        with torch.autocast(self.trainer.device.type, dtype=torch.bfloat16, enabled=self.trainer.bf16):
            x = sample(self.trainer.ema_model, self.sampler, self.x_T, steps, y=self.labels)
        return x.float().cpu()

    def noise(self) -> Tensor:
        """The fixed x_T every preview starts from, clipped to the data's range [-1, 1] (float32, on the CPU)."""
        return self.x_T.float().clamp(-1, 1).cpu()

    def picture(self, samples: Tensor) -> np.ndarray:
        if self.is_points:
            return points_picture(samples, self.reference)
        return grid_picture(samples)


@dataclass
class LiveUpdate:
    """What the page shows after some training: the history, the latest preview, and how the run stands."""

    state: str  # "starting", "training", "finished", "stopped", "diverged"
    history: TrainingHistory
    trainer: Trainer
    preview: np.ndarray | None  # the latest preview picture
    preview_samples: Tensor | None  # the samples behind it
    preview_step: int  # the optimizer step the preview shows
    message: str = ""

    @property
    def done(self) -> bool:
        return self.state in ("finished", "stopped", "diverged")

    @property
    def kept_steps(self) -> int:
        """The optimizer steps a kept model would have: 0 when no loss point was shown (the run was stopped right
        after its start, whose first step is then dropped with it), else the trainer's steps."""
        return self.trainer.step if len(self.history) else 0


class OutOfMemory(RuntimeError):
    """Training ran out of memory; the message suggests a smaller batch."""


def train_live(
    config: TrainConfig,
    *,
    dataset: ImageDataset | PointDataset | None = None,
    compute: Callable[[Callable[[], Any]], Any] | None = None,
    stop: Callable[[], bool] | None = None,
    preview_interval: float = PREVIEW_INTERVAL,
    render_interval: float = RENDER_INTERVAL,
    start_compute: Callable[[Callable[[], Any]], Any] | None = None,
    check_memory: Callable[[Need], None] | None = None,
) -> Iterator[LiveUpdate]:
    """Train with `config`, yielding LiveUpdates (see the module docstring). Raises OutOfMemory with advice.
    `compute` runs each step (default: here); `start_compute` the start (the model and its first step; default:
    `compute`), which the app runs before waiting training steps so that the first loss point
    comes at once. A run stopped before its first loss point was shown keeps nothing (`LiveUpdate.kept_steps`).
    `check_memory(bytes)` is given the run's estimated GPU memory once its data is loaded (explorer.jobs.Job's: it
    raises when the run is over its share of the GPU)."""
    compute = compute if compute is not None else run_here
    stop = stop or (lambda: False)
    config.validate()
    data = dataset if dataset is not None else load_training_data(config)  # a download must not hold the cores
    if check_memory is not None:
        check_memory(lambda: training_need(config, data, pick_device(config.device)))
    if zero_gpu_active():
        yield from _train_on_zero_gpu(config, data, stop)
    else:
        start_compute = start_compute if start_compute is not None else compute
        yield from _train_here(config, data, compute, start_compute, stop, preview_interval, render_interval)


def _train_here(
    config: TrainConfig,
    data: ImageDataset | PointDataset,
    compute: Callable[[Callable[[], Any]], Any],
    start_compute: Callable[[Callable[[], Any]], Any],
    stop: Callable[[], bool],
    preview_interval: float,
    render_interval: float,
) -> Iterator[LiveUpdate]:
    """train_live's run in this process, its steps through `compute`."""
    history = TrainingHistory()
    try:  # the model and its first step in one turn on the cores: the first loss point comes one wait for the
        # compute worker after Start, not two (a class's sampling burst makes each wait longer)
        trainer, preview, run, first = start_compute(lambda: _start(config, data))
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if is_out_of_memory(error):
            raise OutOfMemory(out_of_memory_advice(config)) from None
        raise
    samples = preview.noise()  # what every preview starts from: drawn without the network, so the start stays short
    update = LiveUpdate("starting", history, trainer, preview.picture(samples), samples, 0)
    yield update
    last_render = last_preview = time.perf_counter()
    state, message = "finished", ""
    while True:
        if stop():  # stopped right after the start: its first step is dropped with the run (no loss point shown)
            state = "stopped"
            break
        try:
            due = last_preview + preview_interval
            if first is not None:  # the first step, taken with the start
                step, first = first, None
            else:
                step = compute(lambda due=due: _step(run, preview, due))
            if isinstance(step, TrainingDiverged):
                raise step
            record, fresh, new_samples = step
            now = time.perf_counter()
            samples = new_samples if fresh else samples
        except TrainingDiverged as error:
            state, message = "diverged", str(error)
            break
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if is_out_of_memory(error):
                raise OutOfMemory(out_of_memory_advice(config)) from None
            raise
        if record is None:
            break
        history.add(record)
        if fresh:
            last_preview = time.perf_counter()
            update = LiveUpdate("training", history, trainer, preview.picture(samples), samples, trainer.step)
            last_render = last_preview
            yield update
        elif now - last_render >= render_interval or len(history) == 1:  # the first loss point at once
            last_render = now
            yield LiveUpdate("training", history, trainer, update.preview, update.preview_samples, update.preview_step)
    samples = compute(preview.samples)
    yield LiveUpdate(state, history, trainer, preview.picture(samples), samples, trainer.step, message)


@dataclass
class TrainingFrame:
    """A LiveUpdate without its trainer: what a training in a ZeroGPU call sends back as it goes (picklable)."""

    state: str
    history: TrainingHistory
    preview: np.ndarray | None
    preview_samples: Tensor | None
    preview_step: int
    message: str = ""

    def live(self, trainer: Trainer) -> LiveUpdate:
        """The LiveUpdate of this frame, with `trainer` standing for the run."""
        return LiveUpdate(
            self.state, self.history, trainer, self.preview, self.preview_samples, self.preview_step, self.message
        )


@dataclass(frozen=True)
class TrainingTask:
    """A whole training run as one ZeroGPU call (explorer/zero_gpu.py): it trains on the call's GPU, yields a
    TrainingFrame per LiveUpdate, stops when `stop` is requested, and saves what it learned in `folder`."""

    config: TrainConfig
    data: ImageDataset | PointDataset
    folder: Path
    stop: StopFile

    def __call__(self) -> Iterator[TrainingFrame]:
        config = dataclasses.replace(self.config, device=str(task_device()))
        live = _train_here(
            config, self.data, run_here, run_here, self.stop.requested, PREVIEW_INTERVAL, RENDER_INTERVAL
        )
        try:
            for update in live:
                if update.done and update.kept_steps:
                    update.trainer.save(self.folder)
                samples = update.preview_samples.cpu() if update.preview_samples is not None else None
                yield TrainingFrame(
                    update.state, update.history, update.preview, samples, update.preview_step, update.message
                )
        except OutOfMemory as error:  # crosses back as a message: ZeroGPU passes a gr.Error's text on
            raise gr.Error(str(error)) from None


def _train_on_zero_gpu(
    config: TrainConfig, data: ImageDataset | PointDataset, stop: Callable[[], bool]
) -> Iterator[LiveUpdate]:
    """train_live on ZeroGPU: the run is one GPU call (TrainingTask); this process follows its frames with a CPU
    Trainer holding the config and data, and takes its weights from the checkpoint it saved at the end."""
    trainer = Trainer(dataclasses.replace(config, device="cpu"), dataset=data)
    folder = Path(tempfile.mkdtemp(prefix="zero-gpu-training-"))
    stop_file = StopFile(folder / "stop")
    try:
        frame = None
        task = TrainingTask(config, data, folder / "model", stop_file)
        for frame in gpu_stream(task, training_seconds(config.time_budget, config.steps)):
            if stop():
                stop_file.request()  # the run stops after its current step, and still saves
            if frame.state not in ("finished", "stopped", "diverged"):
                yield frame.live(trainer)
        if frame is None:
            return
        if (folder / "model").exists():
            trainer = Trainer(dataclasses.replace(config, device="cpu"), dataset=data, resume_from=folder / "model")
        yield frame.live(trainer)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_here(fn: Callable[[], Any]) -> Any:
    """The default `compute`: run the step in the calling thread."""
    return fn()


def _start(config: TrainConfig, data: ImageDataset | PointDataset) -> tuple:
    """(trainer, preview, the run, the first step's `_step` outcome or TrainingDiverged)."""
    trainer = Trainer(config, dataset=data)
    preview = Preview(trainer)
    run = trainer.run()
    try:
        first = _step(run, preview, math.inf)
    except TrainingDiverged as error:  # raised by the loop, where a diverged run is handled
        first = error
    return trainer, preview, run, first


def _step(run: Iterator[ProgressRecord], preview: Preview, preview_due: float) -> tuple:
    """One training step, and a fresh preview if one is due: (record or None at the end, fresh, samples)."""
    record = next(run, None)
    if record is None or time.perf_counter() < preview_due:
        return record, False, None
    return record, True, preview.samples()


def out_of_memory_advice(config: TrainConfig) -> str:
    smaller = max(1, config.batch_size // 4)
    return (
        f"Out of memory with batch size {config.batch_size} on the {config.preset!r} model. Try a batch of "
        f"{smaller} or the 'tiny' model; nothing else was affected."
    )


def status_line(update: LiveUpdate) -> str:
    """One line for the page: state, step, time, speed, device, ETA, loss."""
    record = update.history.last
    config = update.trainer.config
    unit = "points/s" if update.trainer.data.kind == "points" else "images/s"
    word = {"training": "Training", "finished": "Finished", "stopped": "Stopped", "diverged": "Stopped (diverged)"}
    if record is None:
        if update.done:
            return f"**{word[update.state]}** before the first training step."
        return (
            f"Starting on **{update.trainer.device}**: the preview shows the noise x_T that every preview starts "
            "from; watch the model turn it into pictures."
        )
    total = f" of {config.steps:,}" if config.steps and config.time_budget is None else ""
    eta = "" if update.done or record.eta_seconds is None else f", about {math.ceil(record.eta_seconds)} s to go"
    return (
        f"**{word.get(update.state, update.state)}**: step {record.step:,}{total}, {record.elapsed:.0f} s, "
        f"{record.images_per_second:,.0f} {unit} on **{record.device}**{eta}; loss {record.loss:.4f} "
        f"({preview_note(update.preview_step)})."
    )


def preview_note(step: int) -> str:
    """What the preview shows: the noise x_T before the first preview is drawn, else the step it was drawn at."""
    return f"preview from step {step:,}" if step else "the preview shows the noise x_T that every preview starts from"
