"""The forward process, its closed forms, conversions between what a network predicts, and the training loss.

With a = alpha-bar_t (Ho et al. 2020, Salimans & Ho 2022 for v):
    q_sample:     x_t = sqrt(a) x_0 + sqrt(1 - a) eps                               (Ho et al. eq. 4)
    q_posterior:  q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta-tilde_t)     (Ho et al. eq. 6-7)
    v:            v = sqrt(a) eps - sqrt(1 - a) x_0                                   (Salimans & Ho 2022, sec. 4)
    x_0 from eps: x_0 = (x_t - sqrt(1 - a) eps) / sqrt(a)
    x_0 from v:   x_0 = sqrt(a) x_t - sqrt(1 - a) v;   eps from v: eps = sqrt(1 - a) x_t + sqrt(a) v

t is an int (one timestep for the batch) or a LongTensor [B]. The explorer plots exactly these functions.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from core.schedules import NoiseSchedule

Objective = Literal["eps", "x0", "v"]
OBJECTIVES: tuple[str, ...] = ("eps", "x0", "v")
WEIGHTINGS: tuple[str, ...] = ("none", "min_snr")
MIN_SNR_GAMMA = 5.0  # Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy"
TIMESTEP_SAMPLINGS: tuple[str, ...] = ("uniform", "logit_normal")


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")


def _coef(schedule: NoiseSchedule, coef: Tensor, t: Tensor | int, x: Tensor) -> Tensor:
    return schedule.at(coef, t, x.shape, dtype=x.dtype, device=x.device)


def draw_timesteps(
    num_timesteps: int,
    batch: int,
    sampling: str = "uniform",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The timesteps a training batch practises, LongTensor [batch] in 0..T-1. "uniform": t ~ U{0..T-1} (Ho et al.
    2020). "logit_normal": t = floor(T sigmoid(n)) with n ~ N(0, 1), the logit-normal of Esser et al. 2024 (SD3)
    on the timestep index: most practice in the middle, where on the cosine schedule signal and noise are equal
    (alpha-bar 0.5 at t = T/2) and the layout of a picture is decided; the clean and the pure-noise ends are still
    drawn, less often. Both draw only from `generator`."""
    if sampling == "uniform":
        return torch.randint(0, num_timesteps, (batch,), generator=generator, device=device)
    if sampling == "logit_normal":
        fraction = torch.sigmoid(torch.randn(batch, generator=generator, device=device))
        return (fraction * num_timesteps).long().clamp_(0, num_timesteps - 1)
    raise ValueError(f"unknown timestep sampling {sampling!r}; choose one of {', '.join(TIMESTEP_SAMPLINGS)}")


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
    """Sample x_t ~ q(x_t | x_0) in closed form: sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) noise."""
    return (
        _coef(schedule, schedule.sqrt_alphas_cumprod, t, x0) * x0
        + _coef(schedule, schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise
    )


def q_step(schedule: NoiseSchedule, x_prev: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
    """One forward step x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)."""
    return (
        _coef(schedule, schedule.alphas.sqrt(), t, x_prev) * x_prev
        + _coef(schedule, schedule.betas.sqrt(), t, x_prev) * noise
    )


def q_posterior(schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7); the variance is shaped to broadcast."""
    mean = (
        _coef(schedule, schedule.posterior_mean_coef1, t, x_t) * x0
        + _coef(schedule, schedule.posterior_mean_coef2, t, x_t) * x_t
    )
    return mean, _coef(schedule, schedule.posterior_variance, t, x_t)


def velocity(schedule: NoiseSchedule, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
    """The v-prediction target: sqrt(alpha-bar_t) eps - sqrt(1 - alpha-bar_t) x_0."""
    return (
        _coef(schedule, schedule.sqrt_alphas_cumprod, t, x0) * noise
        - _coef(schedule, schedule.sqrt_one_minus_alphas_cumprod, t, x0) * x0
    )


def predict_x0(schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, model_output: Tensor, objective: str) -> Tensor:
    """x_0 implied by a network's output under the given objective ("eps", "x0" or "v")."""
    check_objective(objective)
    if objective == "x0":
        return model_output
    sqrt_a = _coef(schedule, schedule.sqrt_alphas_cumprod, t, x_t)
    sqrt_1ma = _coef(schedule, schedule.sqrt_one_minus_alphas_cumprod, t, x_t)
    if objective == "v":
        return sqrt_a * x_t - sqrt_1ma * model_output
    return (x_t - sqrt_1ma * model_output) / sqrt_a


def predict_eps(schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, model_output: Tensor, objective: str) -> Tensor:
    """The noise eps implied by a network's output under the given objective."""
    check_objective(objective)
    if objective == "eps":
        return model_output
    sqrt_a = _coef(schedule, schedule.sqrt_alphas_cumprod, t, x_t)
    sqrt_1ma = _coef(schedule, schedule.sqrt_one_minus_alphas_cumprod, t, x_t)
    if objective == "v":
        return sqrt_1ma * x_t + sqrt_a * model_output
    return (x_t - sqrt_a * model_output) / sqrt_1ma


def predict_v(schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, model_output: Tensor, objective: str) -> Tensor:
    """The velocity v implied by a network's output under the given objective."""
    if objective == "v":
        return model_output
    x0 = predict_x0(schedule, x_t, t, model_output, objective)
    eps = predict_eps(schedule, x_t, t, model_output, objective)
    return velocity(schedule, x0, eps, t)


def training_target(schedule: NoiseSchedule, x0: Tensor, noise: Tensor, t: Tensor | int, objective: str) -> Tensor:
    """What the network is trained to output: eps, x_0 or v."""
    check_objective(objective)
    if objective == "eps":
        return noise
    if objective == "x0":
        return x0
    return velocity(schedule, x0, noise, t)


def loss_weight(snr: Tensor, objective: str, weighting: str, gamma: float = MIN_SNR_GAMMA) -> Tensor:
    """Per-sample loss weight. "min_snr": the weight that turns each objective's loss into
    min(SNR, gamma) * ||x_0 error||^2 (Hang et al. 2023): /SNR for eps, /(SNR + 1) for v, 1 for x0."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if weighting == "none":
        return torch.ones_like(snr)
    clipped = snr.clamp(max=gamma)
    if objective == "x0":
        return clipped
    if objective == "v":
        return clipped / (snr + 1)
    # eps: min(snr, gamma) / snr, whose limit is 1 as snr -> 0 (zero terminal SNR)
    return torch.where(snr > 0, clipped / snr.clamp(min=1e-20), torch.ones_like(snr))


class LossResult(NamedTuple):
    loss: Tensor  # scalar: mean of per_sample
    per_sample: Tensor  # (B,) weighted mean squared error of each sample
    t: Tensor  # (B,) the timesteps drawn
    x0: Tensor  # the clean batch (these rows)
    noise: Tensor  # eps drawn, shaped like x0
    x_t: Tensor  # the network's input, q_sample(x0, t, noise)
    y: Tensor | None  # the labels the network saw (after label drop-out; num_classes = "no class")
    output: Tensor  # the network's output (detached)
    target: Tensor  # what it was trained to output (training_target)


def training_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: Tensor,
    *,
    objective: str = "eps",
    y: Tensor | None = None,
    p_uncond: float = 0.0,
    weighting: str = "none",
    min_snr_gamma: float = MIN_SNR_GAMMA,
    timestep_sampling: str = "uniform",
    generator: torch.Generator | None = None,
    rows: slice | None = None,
) -> LossResult:
    """The simple DDPM loss (Ho et al. eq. 14) for any objective: draw t (draw_timesteps, by `timestep_sampling`:
    U{0..T-1} by default) and eps ~ N(0, I), noise x_0, and regress the network's output on the target. p_uncond
    replaces labels by the "no class" token with that probability (classifier-free guidance training); weighting
    "min_snr" caps the SNR weight at min_snr_gamma.
    Randomness comes only from `generator` (its device is used to draw, then moved to x0's device, so a seed gives
    the same run on any device). `rows`: the part of the batch this process trains on (multi-process training,
    core.distributed): everything is drawn for the whole batch x0, so each slice sees the draws one process would,
    and only those rows go through the network (the result's per_sample and t are theirs)."""
    check_objective(objective)
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
    batch = x0.shape[0]
    draw_device = generator.device if generator is not None else x0.device
    t = draw_timesteps(schedule.num_timesteps, batch, timestep_sampling, generator=generator, device=draw_device)
    noise = torch.randn(x0.shape, generator=generator, device=draw_device, dtype=x0.dtype)
    t, noise = t.to(x0.device), noise.to(x0.device)
    if y is not None and p_uncond > 0:
        num_classes = getattr(getattr(model, "module", model), "num_classes", None)  # (DDP wraps the model)
        if not num_classes:
            raise ValueError("p_uncond needs a class-conditional model (num_classes set)")
        drop = torch.rand(batch, generator=generator, device=draw_device).to(x0.device) < p_uncond
        y = torch.where(drop, torch.full_like(y, num_classes), y)
    if rows is not None:
        x0, t, noise = x0[rows], t[rows], noise[rows]
        y = y[rows] if y is not None else None
    return denoising_loss(
        model, schedule, x0, t, noise, objective=objective, y=y, weighting=weighting, min_snr_gamma=min_snr_gamma
    )


def denoising_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    *,
    objective: str = "eps",
    y: Tensor | None = None,
    weighting: str = "none",
    min_snr_gamma: float = MIN_SNR_GAMMA,
) -> LossResult:
    """training_loss for given draws: noise x0 to x_t at timesteps t (B,) with `noise`, and regress the network's
    output on the objective's target (the same batch and draws through another model, e.g. the same model one
    optimizer step later, give a comparable loss)."""
    x_t = q_sample(schedule, x0, t, noise)
    output = model(x_t, t, y) if y is not None else model(x_t, t)
    target = training_target(schedule, x0, noise, t, objective)
    mse = (output.float() - target.float()).pow(2).flatten(1).mean(dim=1)  # (B,)
    snr = schedule.at(schedule.snr, t, (x0.shape[0],), dtype=torch.float32, device=x0.device)  # (B,)
    weights = loss_weight(snr, objective, weighting, min_snr_gamma).to(mse.dtype)
    per_sample = mse * weights
    return LossResult(per_sample.mean(), per_sample, t, x0, noise, x_t, y, output.detach(), target)
