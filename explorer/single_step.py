"""Training one step at a time, per user: the Train tab's Step button (GAN Lab and TensorFlow Playground let
students step training one update at a time).

The first press builds a model from the tab's settings (the same TrainConfig that Start uses) and keeps it in the
user's session (`UserSession.stepping`, dropped with the session); every press takes exactly one optimizer step
of it (core.observed_step) on the app's compute worker, in turn with everybody's runs, and shows that step: the
batch, its t, the noise, x_t, the prediction, the per-sample and batch loss before and after (explorer.step_pictures),
and the loss of every step so far. Changing a setting starts over from a fresh model. While the user's own live
training runs, Step is refused: that run keeps its cores and its model to itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import gradio as gr
import torch

from core.data import DatasetError
from core.image_files import ArchiveError, ImageInputError
from core.observed_step import ObservedStep, observed_step
from core.toy_data import PointDataset
from core.training import ProgressRecord, TrainConfig, Trainer, TrainingDiverged, load_training_data
from explorer.figures import loss_figure
from explorer.gpu_memory import is_out_of_memory
from explorer.sessions import SessionRegistry, UserSession
from explorer.step_pictures import step_alt_text, step_picture, step_summary, step_table
from explorer.training_run import REFERENCE_POINTS, TrainingHistory, out_of_memory_advice

LIVE_RUN_GOING = (
    "Your training run is going. Step trains a model of its own one update at a time; press Stop (or let the run "
    "finish) first, so that the run keeps its speed."
)
EXPECTED_ERRORS = (DatasetError, ArchiveError, ImageInputError, ValueError, TrainingDiverged)


@dataclass(eq=False)
class SteppedModel:
    """One user's model trained step by step: its config, its Trainer (built on the first press) and its losses."""

    config: TrainConfig
    trainer: Trainer | None = None
    history: TrainingHistory = field(default_factory=TrainingHistory)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one step at a time, however fast the presses


@dataclass(frozen=True)
class StepView:
    """What one press shows."""

    seen: ObservedStep
    history: TrainingHistory
    fresh: bool  # a new model was built for this press
    reference: torch.Tensor | None  # 2D sets: the data, drawn under the points
    warmup_steps: int  # the run's learning-rate warm-up

    def outputs(self) -> tuple:
        """(summary Markdown, picture update with alt text, table, loss plot): the Train tab's Step outputs."""
        headers, rows = step_table(self.seen)
        note = "A fresh model was built from the settings on the left. " if self.fresh else ""
        plotted = self.history.plotted()
        return (
            note + step_summary(self.seen, self.warmup_steps),
            gr.Image(value=step_picture(self.seen, self.reference), alt_text=step_alt_text(self.seen)),
            gr.Dataframe(value=rows, headers=headers),
            loss_figure(plotted["steps"], plotted["losses"], plotted["smoothed"]),
        )


def _model_for(session: UserSession, config: TrainConfig, lock: threading.Lock) -> SteppedModel:
    """The session's stepped model, or a fresh one (not built yet) when there is none or its settings changed."""
    with lock:
        stepped = session.stepping
        if not isinstance(stepped, SteppedModel) or stepped.config != config:
            stepped = SteppedModel(config)
            if not session.closed:
                session.stepping = stepped
        return stepped


class SingleStep:
    """Step presses for every user of one SessionRegistry."""

    def __init__(self, registry: SessionRegistry):
        self.registry = registry
        self._lock = threading.Lock()  # guards each session's `stepping` slot

    def step(self, session: UserSession, config: TrainConfig, dataset: PointDataset | None = None) -> StepView:
        """Take one optimizer step of the session's stepped model (built from `config` if needed, on `dataset` when
        given, e.g. the user's drawing); gr.Error with the reason when it cannot (a live training of this user
        runs, bad data, out of memory, divergence)."""
        job = session.job
        if job is not None and job.kind == "training":
            raise gr.Error(LIVE_RUN_GOING)
        stepped = _model_for(session, config, self._lock)
        with stepped.lock:
            fresh = stepped.trainer is None
            try:
                if fresh:
                    data = dataset or load_training_data(config)  # a download must not hold the cores
                    start = self.registry.compute_for("starting")
                    stepped.trainer = start(lambda: Trainer(config, dataset=data))
                trainer = stepped.trainer
                seen = self.registry.compute_for("training")(lambda: observed_step(trainer))
            except EXPECTED_ERRORS as error:
                raise gr.Error(str(error)) from None
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
                raise gr.Error(out_of_memory_advice(config)) from None
            stepped.history.add(_record(seen, trainer))
            data = trainer.data
            reference = data.tensor[:REFERENCE_POINTS].cpu() if data.kind == "points" else None
            return StepView(seen, stepped.history, fresh, reference, config.warmup_steps)


def _record(seen: ObservedStep, trainer: Trainer) -> ProgressRecord:
    """The step as a training loop's progress record (for the loss plot's history)."""
    return ProgressRecord(
        step=seen.step,
        total_steps=trainer.config.steps,
        loss=seen.loss_before,
        lr=seen.lr,
        grad_norm=seen.grad_norm,
        images_per_second=0.0,
        elapsed=0.0,
        eta_seconds=None,
        bucket_losses=[],
        device=str(trainer.device),
    )
