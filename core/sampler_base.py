"""What every sampler shares: the `Step` it yields per network call, the denoiser it is handed, and the base class.

A sampler never calls the network (diffusers' PHILOSOPHY.md). core.samplers.denoise, the one loop that does, hands
each sampler a `Denoiser`: D(x_t, level) -> (pred_x0, pred_eps), the network's guess of the clean sample and of
the noise at one of the run's noise levels (core.noise_levels), whatever the model predicts (eps, x0 or v), with
guidance applied and x_0 clipped if asked. The sampler's `run` is its paper's algorithm around D, like EDM's
Algorithm 1 around D(x; sigma), and yields one `Step` per network call.

Notation (code -> paper): a = alpha-bar_t, sigma = sqrt((1 - a) / a) (Karras et al. 2022), x_t = sqrt(a) x_0 +
sqrt(1 - a) eps (the state a `Step` shows), x_sigma = x_t / sqrt(a) = x_0 + sigma eps (the state the sigma samplers
integrate), level i = the i-th noise level of the run, n = the clean sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from core.diffusion import check_objective
from core.noise_levels import NoiseLevels, check_spacing, noise_levels
from core.schedules import NoiseSchedule

Denoiser = Callable[[Tensor, int], tuple[Tensor, Tensor]]  # (x_t, level) -> (pred_x0, pred_eps)
Network = Callable[[Tensor, "int | float"], Tensor]  # (x_t, timestep) -> the network's output


def draw_noise(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype,
) -> Tensor:
    """Standard normal noise drawn on the generator's device (so a seed means the same noise everywhere), then
    moved to `device`."""
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


class Step(NamedTuple):
    """One network call of a sampler's run: x_t is the state after it (at noise level t_prev; the last is the
    sample)."""

    index: int  # the network call, 0 .. calls - 1
    t: int | float  # the timestep the network was evaluated at (fractional with Karras sigmas)
    x_t: Tensor  # the state after this call, (B, C, H, W) or (B, 2)
    pred_x0: Tensor  # the network's guess of the clean sample at t
    pred_eps: Tensor  # the network's guess of the noise at t
    t_prev: int | float  # the noise level of x_t (-1 = clean)
    sampler_step: int  # the sampler step this call belongs to, 0 .. steps - 1 (Heun makes two calls per step)
    guidance_x0: Tensor | None = None  # guided runs: pred_x0 with the class minus pred_x0 without it, before
    # clipping (what the class adds to the guess); None when no unconditional call was made (no labels, or scale 1)


class Sampler:
    """Shared part of every sampler: its noise levels, turning a network output into (pred_x0, pred_eps) at a
    level, and the run. Subclasses implement `run`."""

    name = "base"
    whole_timesteps = False  # round Karras timesteps to whole ones (diffusers' DPMSolverMultistepScheduler does)
    needs_finite_sigma = False  # integrates x_sigma, which is infinite at zero terminal SNR's last timestep

    def __init__(
        self, schedule: NoiseSchedule, *, objective: str = "eps", clip_x0: bool = False, spacing: str = "leading"
    ):
        check_objective(objective)
        check_spacing(spacing)
        self.schedule = schedule
        self.objective = objective
        self.clip_x0 = clip_x0
        self.spacing = spacing

    def levels(self, num_steps: int) -> NoiseLevels:
        """The noise levels of a run of num_steps steps (ValueError if this sampler cannot start at them)."""
        levels = noise_levels(self.schedule, num_steps, self.spacing, whole_timesteps=self.whole_timesteps)
        if self.needs_finite_sigma and levels.alpha_bars[0] == 0.0:
            raise ValueError(
                f"{self.name} integrates x / sqrt(alpha-bar), which is infinite at t = {levels.timesteps[0]} under "
                "zero terminal SNR; use the 'leading' spacing (it starts below T-1), or DDIM, DDPM or DPM-Solver++"
            )
        return levels

    def timesteps(self, num_steps: int) -> list[int | float]:
        """The timestep of each of the num_steps levels, descending."""
        return list(self.levels(num_steps).timesteps)

    @classmethod
    def network_calls(cls, num_steps: int) -> int:
        """How many times a run of num_steps steps calls the network."""
        return num_steps

    def predict_at(self, x_t: Tensor, alpha_bar: float, model_output: Tensor) -> tuple[Tensor, Tensor]:
        """(pred_x0, pred_eps) from the network's output at a level with this alpha-bar; with clip_x0, x_0 is
        clamped to [-1, 1] and eps recomputed from the clamped x_0 so the two stay consistent."""
        if self.objective == "eps" and alpha_bar == 0:
            raise ValueError(
                "an eps-prediction model cannot denoise pure noise (alpha-bar = 0 at this t: zero terminal SNR); "
                "use a v- or x0-prediction model, or a spacing that skips the last step (Lin et al. 2023)"
            )
        sqrt_a, sqrt_1ma = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
        if self.objective == "x0":
            pred_x0 = model_output
        elif self.objective == "v":
            pred_x0 = sqrt_a * x_t - sqrt_1ma * model_output  # v = sqrt(a) eps - sqrt(1-a) x_0
        else:
            pred_x0 = (x_t - sqrt_1ma * model_output) / sqrt_a
        if self.clip_x0:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
        if self.objective == "eps" and not self.clip_x0:
            return pred_x0, model_output
        if self.objective == "v" and not self.clip_x0:
            return pred_x0, sqrt_1ma * x_t + sqrt_a * model_output
        return pred_x0, (x_t - sqrt_a * pred_x0) / sqrt_1ma

    def x0_change(self, alpha_bar: float, output_change: Tensor) -> Tensor:
        """How far pred_x0 moves, before clipping, when the network's output moves by `output_change` at a level
        with this alpha-bar: predict_at's x_0 is linear in the output (eps: -sqrt((1 - a) / a), v: -sqrt(1 - a),
        x0: 1). For out_cond - out_uncond it is the guidance direction in picture terms."""
        if self.objective == "x0":
            return output_change
        if self.objective == "v":
            return -math.sqrt(1.0 - alpha_bar) * output_change
        return -math.sqrt((1.0 - alpha_bar) / alpha_bar) * output_change

    def denoiser(self, network: Network, levels: NoiseLevels) -> Denoiser:
        """D(x_t, level): the network's predictions at one of the run's levels."""

        def denoise_at(x_t: Tensor, level: int) -> tuple[Tensor, Tensor]:
            return self.predict_at(x_t, levels.alpha_bars[level], network(x_t, levels.timesteps[level]))

        return denoise_at

    def run(
        self, denoiser: Denoiser, x_T: Tensor, levels: NoiseLevels, generator: torch.Generator | None = None
    ) -> Iterator[Step]:
        """The algorithm: from x_T (unit-variance noise, at level 0) to the clean sample, one `Step` per call."""
        raise NotImplementedError

    def _noise(self, x: Tensor, generator: torch.Generator | None, noise: Tensor | None = None) -> Tensor:
        return noise if noise is not None else draw_noise(x.shape, generator, x.device, x.dtype)
