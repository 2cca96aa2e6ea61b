"""Samplers against exact answers.

For scalar data x_0 ~ sum_k w_k N(m_k, s_k^2) the optimal noise predictor is known in closed form: with
a = alpha-bar_t, x_t = sqrt(a) x_0 + sqrt(1 - a) eps is a mixture of N(sqrt(a) m_k, a s_k^2 + 1 - a), and

    E[eps | x_t] = sum_k r_k(x_t) sqrt(1 - a) (x_t - sqrt(a) m_k) / (a s_k^2 + 1 - a),

r_k the posterior responsibility of component k. Run with it, `denoise` must give back the data distribution,
up to sampling noise (Z standard errors of N samples) and the sampler's own bias, which is measured here and
allowed for explicitly:

* DDPM with beta-tilde variance ("fixed_small") has the exact posterior mean but leaves out the uncertainty of
  x_0 given x_t (the optimal variance adds coef_x0^2 Var[x_0 | x_t], Bao et al. 2022, Analytic-DPM), so it
  samples a little too narrow: -0.78% of the std for N(0.3, 0.5^2), -3.7% for a component of std 0.1.
* DDIM-50 (eta = 0) is a first-order solver of the probability-flow ODE; with the linear schedule its 20-step
  jumps across the t where the data stops being noise (~100..300) shrink the spread (-5.5% std for
  N(0.3, 0.5^2), -9% to -14% for the mixture's narrow components). The error halves with twice the steps.
* x_T ~ N(0, 1) instead of p_T = N(sqrt(a_T) mu, ~1), a_T ~ 4e-5: the deterministic DDIM carries that offset
  into the sample, -0.001 in the mean; DDPM forgets it.

Measured without sampling noise (the Gaussian case is linear, so mean and variance can be pushed through
each step exactly; the DDIM-50 mixture numbers come from 10^6 quantile-spaced x_T), and from 2 * 10^6 samples
for the DDPM-1000 mixture:

    population bias          mean        std       frac > 0   std within a mode (+ / -)
    Gaussian  DDPM-1000    -0.000003   -0.0039
    Gaussian  DDIM-50      -0.0011     -0.0276
    mixture   DDPM-1000    +0.0004     -0.0011    +0.0005     -0.0035 / -0.0033   (se 0.0004 mean, 0.0003 frac)
    mixture   DDIM-50      +0.0026     -0.0115    +0.0028     -0.0142 / -0.0087

The allowances below are these, enlarged by 15-30% (more where the measurement itself is noisy), each on the
side the bias lies; the tolerance is the allowance plus Z standard errors of the N-sample statistic.
"""

from __future__ import annotations

import math

import pytest
import torch
from exact_mixture import BIMODAL, GAUSSIAN, ExactEps
from torch import Tensor, nn

from core.classic_samplers import DDIMSampler, DDPMSampler
from core.diffusion import predict_v, predict_x0, q_sample
from core.sampler_base import Sampler
from core.samplers import sample
from core.schedules import NoiseSchedule, make_schedule

N = 20000
Z = 5.0  # standard errors


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Element-wise work on 20000 scalars gains nothing from intra-op threads, and on a busy 2-core machine
    they slow it ~20x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def linear() -> NoiseSchedule:
    return make_schedule("linear", 1000)


class AsObjective(nn.Module):
    """A noise predictor's output converted to another objective with core.diffusion."""

    def __init__(self, eps_model: nn.Module, schedule: NoiseSchedule, objective: str):
        super().__init__()
        self.eps_model, self.schedule, self.objective = eps_model, schedule, objective

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        eps = self.eps_model(x, t)
        convert = predict_x0 if self.objective == "x0" else predict_v
        return convert(self.schedule, x, t, eps, "eps")


def run(model: nn.Module, sampler: Sampler, num_steps: int, seed: int = 0, dtype=torch.float32) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(N, 1, 1, 1, generator=g, dtype=dtype)
    x = sample(model, sampler, x_T, num_steps, generator=g)
    assert x.shape == x_T.shape and x.dtype == dtype and torch.isfinite(x).all()
    return x.flatten().double()


def assert_within(name: str, value: float, reference: float, se: float, bias: tuple[float, float] = (0.0, 0.0)) -> None:
    """value in [reference + bias_lo - Z se, reference + bias_hi + Z se]."""
    lo, hi = reference + bias[0] - Z * se, reference + bias[1] + Z * se
    assert lo <= value <= hi, f"{name} = {value:.5f}, expected {reference:.5f} in [{lo:.5f}, {hi:.5f}]"


# -------------------------------------------------------------------------------------- the predictor itself


@pytest.mark.parametrize("data", [GAUSSIAN, BIMODAL], ids=["gaussian", "bimodal"])
@pytest.mark.parametrize("t", [10, 150, 600])
def test_exact_predictor_is_the_conditional_mean(linear, data, t):
    """eps - E[eps | x_t] is orthogonal to every function of x_t: check h = 1, x_t, x_t^2, sign(x_t)."""
    n = 200_000
    g = torch.Generator().manual_seed(t)
    x0 = data.sample(n, g).reshape(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = q_sample(linear, x0, t, eps)
    residual = eps - ExactEps(linear, data, torch.float64)(x_t, torch.full((n,), t))
    for h in (torch.ones_like(x_t), x_t, x_t**2, x_t.sign()):
        product = (residual * h).flatten()
        assert abs(product.mean().item()) < Z * product.std().item() / math.sqrt(n)


# ----------------------------------------------------------------------------------- Gaussian: exact moments


def propagate(model: nn.Module, sampler: Sampler, num_steps: int) -> tuple[float, float]:
    """Mean and std of the sample, exactly: with Gaussian data every step is affine in x_t and the noise, so
    x_t ~ N(m, v) maps to N(L(m), L'^2 v + s^2); L and s are read off the sampler's own step in float64."""
    m, v = 0.0, 1.0  # x_T ~ N(0, 1)
    timesteps = sampler.timesteps(num_steps)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1

        def step(x: float, z: float, t=t, t_prev=t_prev) -> float:
            x_t = torch.full((1, 1, 1, 1), x, dtype=torch.float64)
            out = model(x_t, torch.full((1,), t))
            return sampler.step(x_t, t, t_prev, out, noise=torch.full_like(x_t, z))[0].item()

        mean = step(m, 0.0)
        m, v = mean, (step(m + 1, 0.0) - mean) ** 2 * v + (step(m, 1.0) - mean) ** 2
    return m, math.sqrt(v)


def test_gaussian_exact_moments(linear):
    """The biases the sampling tests allow for, computed without sampling noise."""
    model = ExactEps(linear, GAUSSIAN, torch.float64)
    mu, sigma = GAUSSIAN.mean, GAUSSIAN.std
    mean, std = propagate(model, DDPMSampler(linear), 1000)
    assert abs(mean - mu) < 1e-4  # the posterior mean is exact; the chain forgets x_T
    assert -0.0045 < std - sigma < -0.0035  # beta-tilde variance: -0.0039 (Analytic-DPM)
    errors = {}
    for steps in (50, 100, 1000):
        mean, std = propagate(model, DDIMSampler(linear, 0.0), steps)
        errors[steps] = std - sigma
        assert -0.0012 < mean - mu < -0.0008  # x_T's missing sqrt(a_T) mu, carried by the ODE: -0.0010
    assert -0.030 < errors[50] < -0.025  # -0.0276
    assert 0.45 < errors[100] / errors[50] < 0.55  # first order in the step size
    assert -0.002 < errors[1000] < 0  # converges


# ---------------------------------------------------------------------------------------- Gaussian: sampling


@pytest.mark.parametrize(
    ("sampler", "steps", "mean_bias", "std_bias"),
    [
        ("ddpm", 1000, (0.0, 0.0), (-0.0045, 0.0)),
        ("ddim", 50, (-0.0013, 0.0), (-0.032, 0.0)),
    ],
)
def test_gaussian_samples(linear, sampler, steps, mean_bias, std_bias):
    s = DDPMSampler(linear, clip_x0=False) if sampler == "ddpm" else DDIMSampler(linear, 0.0, clip_x0=False)
    x = run(ExactEps(linear, GAUSSIAN), s, steps)
    mu, sigma = GAUSSIAN.mean, GAUSSIAN.std
    assert_within("mean", x.mean().item(), mu, sigma / math.sqrt(N), mean_bias)
    assert_within("std", x.std().item(), sigma, sigma / math.sqrt(2 * N), std_bias)


# ----------------------------------------------------------------------------------------- mixture: sampling


@pytest.mark.parametrize(
    ("sampler", "steps", "bias"),
    [
        ("ddpm", 1000, {"std": (-0.002, 0.0), "mode std": (-0.0045, 0.0)}),
        ("ddim", 50, {"mean": (0.0, 0.003), "std": (-0.013, 0.0), "frac": (0.0, 0.0033), "mode std": (-0.0165, 0.0)}),
    ],
)
def test_mixture_samples(linear, sampler, steps, bias):
    s = DDPMSampler(linear, clip_x0=False) if sampler == "ddpm" else DDIMSampler(linear, 0.0, clip_x0=False)
    x = run(ExactEps(linear, BIMODAL), s, steps)
    none = (0.0, 0.0)
    assert_within("mean", x.mean().item(), BIMODAL.mean, BIMODAL.std / math.sqrt(N), bias.get("mean", none))
    assert_within("std", x.std().item(), BIMODAL.std, BIMODAL.se_std(N), bias.get("std", none))
    means = torch.tensor(BIMODAL.means, dtype=torch.float64)
    nearest = (x[:, None] - means).abs().argmin(dim=1)
    for k, (w, m, s_k) in enumerate(zip(BIMODAL.weights, BIMODAL.means, BIMODAL.stds, strict=True)):
        # the modes are 12 of their stds apart: the fraction nearer mode k is w_k (to 1e-9), and those samples
        # are component k's, std s_k
        frac_bias = bias.get("frac", none) if m > 0 else tuple(-b for b in reversed(bias.get("frac", none)))
        near = x[nearest == k]
        assert_within(f"fraction nearer {m}", len(near) / N, w, math.sqrt(w * (1 - w) / N), frac_bias)
        assert_within(f"std nearer {m}", near.std().item(), s_k, s_k / math.sqrt(2 * w * N), bias.get("mode std", none))


# --------------------------------------------------------------------------------- objectives are equivalent


def test_eps_x0_v_objectives_give_the_same_ddim_samples(linear):
    """The exact predictor's output as eps, as x_0 and as v: DDIM-50 must land on the same samples. float64,
    since in float32 the x_0 objective's eps = (x_t - sqrt(a) x_0) / sqrt(1 - a) at t = 0 and samples near the
    boundary between the modes (where the ODE separates neighbours) amplify rounding to ~3e-5."""
    eps_model = ExactEps(linear, BIMODAL, torch.float64)
    reference = run(eps_model, DDIMSampler(linear, 0.0, objective="eps"), 50, seed=1, dtype=torch.float64)
    for objective in ("x0", "v"):
        model = AsObjective(eps_model, linear, objective)
        x = run(model, DDIMSampler(linear, 0.0, objective=objective), 50, seed=1, dtype=torch.float64)
        assert (x - reference).abs().max().item() < 1e-8, objective
