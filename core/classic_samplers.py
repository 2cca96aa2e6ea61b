"""DDPM (Ho et al. 2020) and DDIM (Song et al. 2021): one jump per network call, from level a_t to a_prev.

Both are written as a jump between two alpha-bars, so they run on any noise levels (whole timesteps or Karras
sigmas); `step` keeps the one-jump form with timesteps (t_prev = -1: the clean sample) for tests and diffusers
comparisons. beta_t' = 1 - a_t / a_prev is the effective beta of a jump from t_prev to t.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from core.noise_levels import NoiseLevels
from core.sampler_base import Denoiser, Sampler, Step
from core.schedules import NoiseSchedule


class JumpSampler(Sampler):
    """A sampler whose every network call is one jump x_t -> x_prev given (pred_x0, pred_eps)."""

    def jump(
        self,
        x_t: Tensor,
        a_t: float,
        a_prev: float,
        pred_x0: Tensor,
        pred_eps: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def run(
        self, denoiser: Denoiser, x_T: Tensor, levels: NoiseLevels, generator: torch.Generator | None = None
    ) -> Iterator[Step]:
        x = x_T
        for i, t in enumerate(levels.timesteps):
            pred_x0, pred_eps = denoiser(x, i)
            x = self.jump(x, levels.alpha_bars[i], levels.alpha_bars[i + 1], pred_x0, pred_eps, generator)
            yield Step(i, t, x, pred_x0, pred_eps, levels.label(i + 1), i)

    def step(
        self,
        x_t: Tensor,
        t: int,
        t_prev: int,
        model_output: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One reverse step from x_t at t to x_{t_prev} (t_prev = -1: the clean sample). Returns (x_prev, pred_x0).
        Fresh noise comes from `generator`, or pass `noise` to inject it."""
        if not -1 <= t_prev < t < self.schedule.num_timesteps:
            raise ValueError(f"need -1 <= t_prev < t < {self.schedule.num_timesteps}, got t={t}, t_prev={t_prev}")
        a_t, a_prev = self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_prev)
        pred_x0, pred_eps = self.predict_at(x_t, a_t, model_output)
        return self.jump(x_t, a_t, a_prev, pred_x0, pred_eps, generator, noise), pred_x0


class DDPMSampler(JumpSampler):
    """Ancestral sampling from the posterior q(x_{t_prev} | x_t, x_0 = pred_x0) with variance beta-tilde
    (Ho et al. 2020, Algorithm 2; fewer steps than T use the effective beta of each jump, as diffusers does)."""

    name = "ddpm"

    def jump(
        self,
        x_t: Tensor,
        a_t: float,
        a_prev: float,
        pred_x0: Tensor,
        pred_eps: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        beta_t = 1.0 - a_t / a_prev  # 1. effective beta of the jump t_prev -> t
        # 2. posterior mean coefficients, Ho et al. eq. 7
        coef_x0 = math.sqrt(a_prev) * beta_t / (1.0 - a_t)
        coef_xt = math.sqrt(1.0 - beta_t) * (1.0 - a_prev) / (1.0 - a_t)
        mean = coef_x0 * pred_x0 + coef_xt * x_t
        if a_prev == 1.0:
            return mean  # 3. the last step returns the posterior mean, no noise
        # 4. posterior variance beta-tilde, eq. 7, clamped like diffusers' "fixed_small"
        variance = max((1.0 - a_prev) / (1.0 - a_t) * beta_t, 1e-20)
        return mean + math.sqrt(variance) * self._noise(x_t, generator, noise)


class DDIMSampler(JumpSampler):
    """DDIM (Song et al. 2021, eq. 12): x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z, with
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev) (eq. 16). eta = 0 is deterministic;
    eta = 1 has DDPM's variance."""

    name = "ddim"

    def __init__(
        self,
        schedule: NoiseSchedule,
        eta: float = 0.0,
        *,
        objective: str = "eps",
        clip_x0: bool = False,
        spacing: str = "leading",
    ):
        super().__init__(schedule, objective=objective, clip_x0=clip_x0, spacing=spacing)
        if not (0.0 <= eta <= 1.0):
            raise ValueError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
        self.eta = float(eta)

    def jump(
        self,
        x_t: Tensor,
        a_t: float,
        a_prev: float,
        pred_x0: Tensor,
        pred_eps: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        # 1. sigma_t, eq. 16
        sigma = self.eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        # 2. "direction pointing to x_t", eq. 12
        direction = math.sqrt(max(1.0 - a_prev - sigma**2, 0.0)) * pred_eps
        # 3. x_{t_prev} without the random part, eq. 12
        x_prev = math.sqrt(a_prev) * pred_x0 + direction
        if sigma > 0:
            x_prev = x_prev + sigma * self._noise(x_t, generator, noise)
        return x_prev
