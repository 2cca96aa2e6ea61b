"""One optimizer step, observed: what a student sees when training is stepped one update at a time (the Train tab's
Step button; GAN Lab and TensorFlow Playground let students step training the same way).

`observed_step(trainer)` takes exactly one `Trainer.train_step`, the step `Trainer.run` takes, at the learning rate
the run's schedule gives that step (`step_lr`), and returns an `ObservedStep` holding that step's own tensors
(`Trainer.last_loss`, a core.diffusion.LossResult): the batch x0, its timesteps t, the noise eps drawn, the noisy
input x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps, the network's output in the objective's terms (eps,
x0 or v) and the x0 it implies (core.diffusion.predict_x0), each sample's loss, and the batch loss before the update
and after it: the same batch, t and noise through the updated network (core.diffusion.denoising_loss), so the two
numbers differ by the update alone.

    trainer = Trainer(TrainConfig(steps=100))
    seen = observed_step(trainer)     # trainer.step is now 1
    print(seen.t, seen.loss_before, seen.loss_after)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.diffusion import denoising_loss, predict_x0
from core.training import TrainConfig, Trainer, lr_at


@dataclass(frozen=True)
class ObservedStep:
    """One optimizer step's tensors, float32 on the CPU; B is the batch size."""

    step: int  # the trainer's steps after this one (1 after the first)
    lr: float  # the learning rate of this step
    grad_norm: float  # the gradient's norm before clipping
    objective: str  # what the network predicts: "eps", "x0" or "v"
    x0: Tensor  # (B, C, H, W) pictures or (B, D) points: the batch
    y: Tensor | None  # (B,) the labels the network saw (num_classes: "no class", dropped for guidance)
    t: Tensor  # (B,) the timestep of each sample
    alpha_bar: Tensor  # (B,) alpha-bar_t of each sample: the share of x0 left in x_t is its square root
    noise: Tensor  # eps, like x0
    x_t: Tensor  # the network's input, like x0
    output: Tensor  # the network's prediction before the update, in the objective's terms
    target: Tensor  # what it should have predicted (eps, x0 or v)
    pred_x0: Tensor  # the x0 the prediction implies
    per_sample: Tensor  # (B,) each sample's loss before the update
    per_sample_after: Tensor  # (B,) each sample's loss after it (same x0, t and noise)
    loss_before: float  # the batch loss the step descended: the mean of per_sample
    loss_after: float  # the mean of per_sample_after


def step_lr(config: TrainConfig, step: int) -> float:
    """The learning rate of optimizer step `step` (0-based) taken one at a time: warm-up, then the cosine decay over
    `config.steps` (a run measured in seconds has no end in steps; stepped by hand, it stays at the peak)."""
    return lr_at(config, step, step / config.steps if config.steps else 0.0)


def _shown(tensor: Tensor) -> Tensor:
    return tensor.detach().float().cpu()


def observed_step(trainer: Trainer, lr: float | None = None) -> ObservedStep:
    """Take one optimizer step of `trainer` (at `lr`, default `step_lr`) and return what it saw and did. Raises
    core.training.TrainingDiverged like train_step (the weights from before the step are kept)."""
    config = trainer.config
    lr = step_lr(config, trainer.step) if lr is None else lr
    loss, grad_norm = trainer.train_step(lr)
    seen = trainer.last_loss
    assert seen is not None  # train_step records every step it takes
    with torch.no_grad(), torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
        after = denoising_loss(
            trainer.network,
            trainer.schedule,
            seen.x0,
            seen.t,
            seen.noise,
            objective=config.objective,
            y=seen.y,
            weighting=config.weighting,
            min_snr_gamma=config.min_snr_gamma,
        )
    schedule = trainer.schedule
    x_t, t, output = _shown(seen.x_t), seen.t.cpu(), _shown(seen.output)
    return ObservedStep(
        step=trainer.step,
        lr=lr,
        grad_norm=grad_norm,
        objective=config.objective,
        x0=_shown(seen.x0),
        y=seen.y.cpu() if seen.y is not None else None,
        t=t,
        alpha_bar=schedule.alphas_cumprod[t].float(),
        noise=_shown(seen.noise),
        x_t=x_t,
        output=output,
        target=_shown(seen.target),
        pred_x0=predict_x0(schedule, x_t, t, output, config.objective),
        per_sample=_shown(seen.per_sample),
        per_sample_after=_shown(after.per_sample),
        loss_before=loss,
        loss_after=float(after.loss),
    )
