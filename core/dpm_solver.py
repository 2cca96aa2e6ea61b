"""DPM-Solver++(2M) and its SDE variant (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling").

DPM-Solver++ solves the diffusion ODE exactly in its linear part and approximates only the data prediction
x_theta (our pred_x0) in the integral, in the half-log-SNR lambda = log(alpha / sigma), with alpha = sqrt(a),
sigma = sqrt(1 - a) (the noise and signal scales of x_t, not Karras' sigma). For a step from level s to t with
h = lambda_t - lambda_s:

* first order (eq. 9; it is DDIM):  x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s
* 2M (Algorithm 2, multistep): the same with D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev in place of x0_s, where
  r = h_prev / h uses the previous step's prediction: one network call per step, second order.
* SDE variant (the SDE-DPM-Solver++(2M) of diffusers and k-diffusion, from Lu et al.'s Appendix / Gonzalez et al.):
  x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) D + sigma_t sqrt(1 - e^{-2h}) z.

As in diffusers (lower_order_final with final_sigmas_type "zero"), the first step and the last step (to the clean
sample, where lambda = infinity) are first order. Levels with zero terminal SNR (alpha = 0, lambda = -infinity)
work: e^{-h} = 0 and the first step is DDIM from pure noise. Checked against diffusers'
DPMSolverMultistepScheduler (dpmsolver++ and sde-dpmsolver++, order 2, midpoint) on whole trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from core.noise_levels import NoiseLevels
from core.sampler_base import Denoiser, Sampler, Step


def half_log_snr(alpha_bar: float) -> float:
    """lambda = log(alpha / sigma) = log(a / (1 - a)) / 2; -infinity at a = 0, +infinity at a = 1."""
    if alpha_bar <= 0.0:
        return -math.inf
    if alpha_bar >= 1.0:
        return math.inf
    return 0.5 * math.log(alpha_bar / (1.0 - alpha_bar))


class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M), deterministic (Lu et al. 2022, Algorithm 2)."""

    name = "dpmpp_2m"
    whole_timesteps = True  # as diffusers' DPMSolverMultistepScheduler: Karras sigmas at rounded timesteps
    stochastic = False

    def run(
        self, denoiser: Denoiser, x_T: Tensor, levels: NoiseLevels, generator: torch.Generator | None = None
    ) -> Iterator[Step]:
        x = x_T
        previous: tuple[Tensor, float] | None = None  # (x0, h) of the step before
        last = len(levels) - 1
        for i, t in enumerate(levels.timesteps):
            a_s, a_t = levels.alpha_bars[i], levels.alpha_bars[i + 1]
            alpha_t, sigma_s, sigma_t = math.sqrt(a_t), math.sqrt(1.0 - a_s), math.sqrt(1.0 - a_t)
            h = half_log_snr(a_t) - half_log_snr(a_s)  # 1. the step's length in lambda
            pred_x0, pred_eps = denoiser(x, i)
            # 2. the data prediction to integrate: first order on the first and last steps, else 2M's D
            data = pred_x0
            if previous is not None and i < last:
                prev_x0, h_prev = previous
                r = h_prev / h
                data = pred_x0 + (pred_x0 - prev_x0) / (2.0 * r)  # D = (1 + 1/2r) x0_s - (1/2r) x0_prev
            # 3. the exact linear part and the integral of D: eq. 9 (ODE) or its SDE form
            decay = math.exp(-h)  # e^{-h} = (sigma_t / alpha_t) (alpha_s / sigma_s); 0 when t is clean
            if self.stochastic:
                noise = self._noise(x, generator)  # drawn on every step, as diffusers does
                x = (
                    (sigma_t / sigma_s * decay) * x
                    + alpha_t * (1.0 - decay**2) * data
                    + sigma_t * math.sqrt(1.0 - decay**2) * noise
                )
            else:
                x = (sigma_t / sigma_s) * x - alpha_t * (decay - 1.0) * data
            previous = (pred_x0, h)
            yield Step(i, t, x, pred_x0, pred_eps, levels.label(i + 1), i)


class DPMSolverPP2MSDE(DPMSolverPP2M):
    """SDE-DPM-Solver++(2M): the 2M update with fresh noise each step (diffusers' "sde-dpmsolver++")."""

    name = "dpmpp_2m_sde"
    stochastic = True
