"""The new samplers against an exact answer: with the optimal noise predictor of a two-mode mixture
(tests/exact_mixture.py: weights 0.3 / 0.7, means -0.6 / +0.6, spreads 0.1), 20 steps on Karras sigmas must give
back the mixture's weights, means and spreads.

Each sampler has its own error at 20 steps, measured with 20,000 samples (linear schedule, seed 0):

    sampler           weight of -0.6   means (- / +)     spreads (- / +)
    euler             0.289            -0.551 / +0.573   0.118 / 0.107     (= DDIM, eta 0)
    euler_ancestral   0.265            -0.555 / +0.578   0.099 / 0.085     (= DDPM with the same levels)
    heun              0.306            -0.617 / +0.607   0.104 / 0.104
    dpmpp_2m          0.303            -0.629 / +0.611   0.101 / 0.101
    dpmpp_2m_sde      0.292            -0.654 / +0.623   0.109 / 0.105

The allowances below are those errors enlarged by about a third; the test also checks what the orders promise:
the second-order solvers (Heun, DPM-Solver++(2M)) get the spreads closer than the first-order Euler.
"""

from __future__ import annotations

import pytest
import torch
from exact_mixture import BIMODAL, ExactEps

from core.samplers import make_sampler, sample
from core.schedules import make_schedule

N = 20000
STEPS = 20
ALLOWANCE = {  # sampler -> (weight, mean, relative spread)
    "euler": (0.02, 0.07, 0.25),
    "euler_ancestral": (0.05, 0.065, 0.2),
    "heun": (0.02, 0.03, 0.07),
    "dpmpp_2m": (0.02, 0.04, 0.05),
    "dpmpp_2m_sde": (0.02, 0.075, 0.12),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def modes(name: str) -> list[tuple[float, float, float]]:
    """(weight, mean, spread) of the samples nearer each of the mixture's means."""
    schedule = make_schedule("linear", 1000)
    generator = torch.Generator().manual_seed(0)
    x_T = torch.randn(N, 1, 1, 1, generator=generator)
    sampler = make_sampler(name, schedule, spacing="karras")
    x = sample(ExactEps(schedule, BIMODAL), sampler, x_T, STEPS, generator=generator).flatten().double()
    assert torch.isfinite(x).all()
    nearest = (x[:, None] - torch.tensor(BIMODAL.means, dtype=torch.float64)).abs().argmin(dim=1)
    return [(len(x[nearest == k]) / N, x[nearest == k].mean().item(), x[nearest == k].std().item()) for k in range(2)]


@pytest.mark.parametrize("name", list(ALLOWANCE))
def test_recovers_the_mixture_in_20_steps(name: str) -> None:
    weight_tol, mean_tol, spread_tol = ALLOWANCE[name]
    for (weight, mean, spread), w, m, s in zip(modes(name), BIMODAL.weights, BIMODAL.means, BIMODAL.stds, strict=True):
        assert abs(weight - w) <= weight_tol, (name, m, weight)
        assert abs(mean - m) <= mean_tol, (name, m, mean)
        assert abs(spread / s - 1) <= spread_tol, (name, m, spread)


def test_second_order_spreads_beat_euler() -> None:
    def spread_error(name: str) -> float:
        return max(abs(spread / s - 1) for (_, _, spread), s in zip(modes(name), BIMODAL.stds, strict=True))

    euler = spread_error("euler")
    assert spread_error("heun") < euler / 2 and spread_error("dpmpp_2m") < euler / 2, euler
