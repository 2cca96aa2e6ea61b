"""Euler, Euler ancestral, Heun, DPM-Solver++(2M) and its SDE variant against diffusers, on whole trajectories.

Both sides run every network call of a run from the same x_T with the same network (a smooth function of x_t and
of the timestep, fractional ones included, standing in for an imperfect denoiser) and the same random draws; every
state is compared in the x_t frame (diffusers' Euler family keeps x_sigma = x_t sqrt(1 + sigma^2); it is divided
back). diffusers gets our betas (`trained_betas`, which it keeps in float32). Tolerance: 1e-4 max abs difference,
times max(1, |reference|).

Spacings compared: "trailing" (defined alike for all), "leading" for the Euler family (DPMSolverMultistepScheduler
spaces "leading" over n + 1 points) and "karras" against diffusers' use_karras_sigmas with its default "linspace"
spacing (whose Karras range is sigma(0) .. sigma(T-1), as ours). EulerAncestralDiscreteScheduler has no Karras
option in diffusers 0.42: it gets the sigmas and timesteps that EulerDiscreteScheduler(use_karras_sigmas=True)
computes.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

pytest.importorskip("diffusers")
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
)

from core.sampler_base import draw_noise
from core.samplers import denoise, make_sampler
from core.schedules import make_schedule

T = 1000
STEPS = 12
SHAPE = (2, 1, 6, 6)
TOL = 1e-4
PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SIGMA_FAMILY = ("euler", "euler_ancestral", "heun")
STOCHASTIC = ("euler_ancestral", "dpmpp_2m_sde")


class SmoothNetwork(nn.Module):
    """output = a(t) x + b(t) c: depends on x and on the (possibly fractional) timestep, like a real network."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("c", torch.linspace(-1, 1, math.prod(SHAPE[1:])).reshape(SHAPE[1:]))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        t = t.float().reshape(-1, *([1] * (x.dim() - 1)))
        return (0.4 + 0.3 * torch.sin(t / 150.0)) * x + 0.5 * torch.cos(t / 230.0) * self.c


def reference_scheduler(name: str, objective: str, spacing: str):
    betas = make_schedule("linear", T).betas.numpy()
    karras = spacing == "karras"
    config = dict(
        num_train_timesteps=T,
        trained_betas=betas,
        prediction_type=PREDICTION_TYPES[objective],
        timestep_spacing="linspace" if karras else spacing,
    )
    if name.startswith("dpmpp"):
        algorithm = "sde-dpmsolver++" if name.endswith("sde") else "dpmsolver++"
        return DPMSolverMultistepScheduler(
            **config, algorithm_type=algorithm, solver_order=2, use_karras_sigmas=karras, thresholding=False
        )
    if name == "euler_ancestral":
        scheduler = EulerAncestralDiscreteScheduler(**config)
        if karras:
            source = EulerDiscreteScheduler(**config, use_karras_sigmas=True)
            source.set_timesteps(STEPS)
            scheduler.set_timesteps(STEPS)
            scheduler.sigmas, scheduler.timesteps = source.sigmas.clone(), source.timesteps.clone()
            return scheduler
    else:
        cls = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler}[name]
        scheduler = cls(**config, use_karras_sigmas=karras)
    return scheduler


def reference_trajectory(name: str, objective: str, spacing: str, x_T: Tensor, seed: int) -> list[Tensor]:
    """diffusers' state after every network call, in the x_t frame."""
    scheduler = reference_scheduler(name, objective, spacing)
    if not (name == "euler_ancestral" and spacing == "karras"):
        scheduler.set_timesteps(STEPS)
    network, generator = SmoothNetwork(), torch.Generator().manual_seed(seed)
    sigma_family = name in SIGMA_FAMILY
    sample = x_T * math.sqrt(1 + scheduler.sigmas[0].item() ** 2) if sigma_family else x_T
    states = []
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(sample, t)
        output = network(model_input, t.reshape(1).expand(x_T.shape[0]))
        noise = {"generator": generator} if name in STOCHASTIC else {}
        sample = scheduler.step(output, t, sample, **noise).prev_sample
        sigma_next = scheduler.sigmas[i + 1].item()
        states.append(sample / math.sqrt(1 + sigma_next**2) if sigma_family else sample)
    return states


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing", ["trailing", "leading", "karras"])
@pytest.mark.parametrize("name", ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde"])
def test_whole_trajectory_equals_diffusers(name: str, spacing: str, objective: str) -> None:
    if name == "euler_ancestral" and objective == "x0":
        pytest.skip("diffusers' EulerAncestralDiscreteScheduler raises NotImplementedError for 'sample' prediction")
    if name.startswith("dpmpp") and spacing == "leading":
        pytest.skip("DPMSolverMultistepScheduler's 'leading' spaces n + 1 points; ours (DDIM's) n")
    x_T = draw_noise(SHAPE, torch.Generator().manual_seed(1), "cpu", torch.float32)
    expected = reference_trajectory(name, objective, spacing, x_T, seed=5)
    sampler = make_sampler(name, make_schedule("linear", T), objective=objective, spacing=spacing)
    steps = list(denoise(SmoothNetwork(), sampler, x_T, STEPS, generator=torch.Generator().manual_seed(5)))
    assert len(steps) == len(expected) == sampler.network_calls(STEPS)
    for step, reference in zip(steps, expected, strict=True):
        scale = max(1.0, reference.abs().max().item())
        error = (step.x_t - reference).abs().max().item()
        assert error <= TOL * scale, (step.index, step.t, error)
    assert steps[-1].t_prev == -1


def test_heun_calls_belong_to_their_steps() -> None:
    """Heun: 2n - 1 calls, two per step but one on the last; the corrector is evaluated at the next level."""
    sampler = make_sampler("heun", make_schedule("linear", T), spacing="trailing")
    x_T = draw_noise(SHAPE, torch.Generator().manual_seed(1), "cpu", torch.float32)
    steps = list(denoise(SmoothNetwork(), sampler, x_T, 4))
    timesteps = sampler.timesteps(4)
    assert [s.sampler_step for s in steps] == [0, 0, 1, 1, 2, 2, 3]
    assert [s.t for s in steps] == [timesteps[0], timesteps[1], timesteps[1], timesteps[2], timesteps[2],
                                    timesteps[3], timesteps[3]]  # fmt: skip
    assert [s.index for s in steps] == list(range(7))
