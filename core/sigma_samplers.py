"""Euler, Euler ancestral and Heun: solvers of the probability-flow ODE in sigma (Karras et al. 2022, "EDM").

Karras et al. write the noisy sample as x = x_0 + sigma eps (x_sigma = x_t / sqrt(alpha-bar)), so that the
probability-flow ODE is dx/dsigma = (x - D(x; sigma)) / sigma (eq. 3 with sigma(t) = t), D the denoiser's x_0.
These samplers integrate that ODE from sigma_0 (the first level) to 0; the network still sees x_t = x_sigma /
sqrt(1 + sigma^2) (diffusers' `scale_model_input`), and every `Step` shows x_t, so they read like DDPM and DDIM.

* Euler: Algorithm 1 without its correction (lines 3-5 and 9); with eps-prediction it is DDIM (eta = 0).
* Heun: Algorithm 1 (Heun's 2nd-order method): an Euler step, then a correction with the slope at its end,
  except on the last step to sigma = 0: 2n - 1 network calls for n steps.
* Euler ancestral: each step goes down to sigma_down with Euler and adds fresh noise sigma_up back, so that
  sigma_down^2 + sigma_up^2 = sigma_next^2 (k-diffusion's `get_ancestral_step`, the eta = 1 ancestral sampler of
  Song et al. 2021's reverse SDE).

Checked against diffusers' EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and HeunDiscreteScheduler on
whole trajectories (tests/test_new_samplers_vs_diffusers.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from core.noise_levels import NoiseLevels
from core.sampler_base import Denoiser, Sampler, Step


def to_sigma_frame(x_t: Tensor, sigma: float) -> Tensor:
    """x_sigma = x_t / sqrt(alpha-bar) = x_t sqrt(1 + sigma^2)."""
    return x_t * math.sqrt(1.0 + sigma * sigma)


def to_t_frame(x_sigma: Tensor, sigma: float) -> Tensor:
    """x_t = x_sigma / sqrt(1 + sigma^2), the state the network and the page see."""
    return x_sigma / math.sqrt(1.0 + sigma * sigma)


class SigmaSampler(Sampler):
    """A sampler that integrates x_sigma (so it needs a finite sigma at its first level)."""

    needs_finite_sigma = True

    def denoised(self, denoiser: Denoiser, x: Tensor, levels: NoiseLevels, i: int) -> tuple[Tensor, Tensor]:
        """D(x; sigma_i): (pred_x0, pred_eps) for the state x_sigma at level i."""
        return denoiser(to_t_frame(x, levels.sigma(i)), i)


class EulerSampler(SigmaSampler):
    """Euler's method on dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022, Algorithm 1, lines 4-5)."""

    name = "euler"

    def run(
        self, denoiser: Denoiser, x_T: Tensor, levels: NoiseLevels, generator: torch.Generator | None = None
    ) -> Iterator[Step]:
        x = to_sigma_frame(x_T, levels.sigma(0))  # x_T ~ N(0, 1) is x_sigma ~ N(0, 1 + sigma_0^2), Alg. 1 line 2
        for i, t in enumerate(levels.timesteps):
            sigma, sigma_next = levels.sigma(i), levels.sigma(i + 1)
            pred_x0, pred_eps = self.denoised(denoiser, x, levels, i)
            d = (x - pred_x0) / sigma  # line 4: the ODE's slope, eq. 3
            x = x + (sigma_next - sigma) * d  # line 5: an Euler step to sigma_next
            yield Step(i, t, to_t_frame(x, sigma_next), pred_x0, pred_eps, levels.label(i + 1), i)


class HeunSampler(SigmaSampler):
    """Heun's 2nd-order method (Karras et al. 2022, Algorithm 1): each step is an Euler step to sigma_next
    (the predictor, one call) and, unless sigma_next = 0, a correction with the average of the slopes at both ends
    (the corrector, a second call)."""

    name = "heun"

    @classmethod
    def network_calls(cls, num_steps: int) -> int:
        return 2 * num_steps - 1

    def run(
        self, denoiser: Denoiser, x_T: Tensor, levels: NoiseLevels, generator: torch.Generator | None = None
    ) -> Iterator[Step]:
        x = to_sigma_frame(x_T, levels.sigma(0))  # line 2
        call = 0
        for i, t in enumerate(levels.timesteps):
            sigma, sigma_next = levels.sigma(i), levels.sigma(i + 1)
            pred_x0, pred_eps = self.denoised(denoiser, x, levels, i)
            d = (x - pred_x0) / sigma  # line 7: the slope at sigma_i
            x_euler = x + (sigma_next - sigma) * d  # line 8: the Euler predictor
            yield Step(call, t, to_t_frame(x_euler, sigma_next), pred_x0, pred_eps, levels.label(i + 1), i)
            call += 1
            if sigma_next == 0:  # line 9: the last step to sigma = 0 stays an Euler step
                break
            pred_x0, pred_eps = self.denoised(denoiser, x_euler, levels, i + 1)
            d_next = (x_euler - pred_x0) / sigma_next  # line 10: the slope at the predictor's end
            x = x + (sigma_next - sigma) * (d + d_next) / 2  # line 11: the trapezoidal correction
            t_next = levels.timesteps[i + 1]
            yield Step(call, t_next, to_t_frame(x, sigma_next), pred_x0, pred_eps, levels.label(i + 1), i)
            call += 1


class EulerAncestralSampler(SigmaSampler):
    """Euler down to sigma_down, then fresh noise of size sigma_up (k-diffusion's `sample_euler_ancestral`):
    sigma_up = min(sigma_next, sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)),
    sigma_down = sqrt(sigma_next^2 - sigma_up^2)."""

    name = "euler_ancestral"

    def run(
        self, denoiser: Denoiser, x_T: Tensor, levels: NoiseLevels, generator: torch.Generator | None = None
    ) -> Iterator[Step]:
        x = to_sigma_frame(x_T, levels.sigma(0))
        for i, t in enumerate(levels.timesteps):
            sigma, sigma_next = levels.sigma(i), levels.sigma(i + 1)
            pred_x0, pred_eps = self.denoised(denoiser, x, levels, i)
            # 1. split sigma_next^2 into a deterministic part and fresh noise (the DDPM posterior's share)
            sigma_up = min(sigma_next, math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
            sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
            # 2. an Euler step of the ODE (eq. 3) down to sigma_down
            d = (x - pred_x0) / sigma
            x = x + (sigma_down - sigma) * d
            # 3. add the fresh noise; drawn on every step, the last included, as diffusers does (a seed gives
            # the same samples as EulerAncestralDiscreteScheduler)
            x = x + sigma_up * self._noise(x, generator)
            yield Step(i, t, to_t_frame(x, sigma_next), pred_x0, pred_eps, levels.label(i + 1), i)
