"""Our DDPM / DDIM steps and timestep sequences against diffusers' DDPMScheduler / DDIMScheduler.

Two kinds of comparison:

* "stock": diffusers exactly as a user builds it, schedule and all, float32 tensors. diffusers keeps its betas
  and alpha-bars in float32 (up to 4e-7 relative off our float64 ones), so the inputs are realistic:
  x_t = q_sample(x_0, eps) and a model output = the exact target + 0.1 N(0, 1) (an imperfect network). With
  arbitrary, inconsistent inputs the x0-objective's eps = (x_t - sqrt(a) x_0) / sqrt(1 - a) amplifies
  diffusers' float32 alpha-bar rounding by 1 / sqrt(1 - a) (~80 at t = 20) to ~5e-5: a float32 artefact, not
  a difference in the formulas. Tolerance: 1e-5 max abs difference, times max(1, |reference|) because pred_x0
  reaches ~50 at t = 999 with eps-prediction, where 1e-5 absolute is below two float32 ulps.
* "formula": diffusers given our float64 alpha-bars and float64 tensors, arbitrary inputs; any difference in
  the update rules shows up far above float64 rounding.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler

from core.classic_samplers import DDIMSampler, DDPMSampler
from core.diffusion import q_sample, training_target
from core.noise_levels import WHOLE_SPACINGS, timestep_sequence
from core.schedules import NoiseSchedule, make_schedule

T = 1000
PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
LINEAR = {
    "num_train_timesteps": T,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "clip_sample": False,
}
SHAPE = (2, 3, 8, 8)
TOL = 1e-5  # max abs difference, stock diffusers (float32)
TOL_FORMULA = 1e-9  # max abs difference, float64 on both sides (pred_x0 reaches ~1e3 at t = 980)


@pytest.fixture(scope="module")
def linear() -> NoiseSchedule:
    return make_schedule("linear", T)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    return (a - b).abs().max().item()


def assert_close(ours: torch.Tensor, reference: torch.Tensor, tol: float = TOL) -> None:
    """max |ours - reference| <= tol * max(1, max |reference|)."""
    scale = max(1.0, reference.abs().max().item())
    assert max_diff(ours, reference) <= tol * scale, (max_diff(ours, reference), tol * scale)


def realistic_inputs(schedule: NoiseSchedule, t: int, objective: str, seed: int = 0):
    """(x_t, model_output, z), float32: x_t from q_sample of x_0 in [-1, 1]; the output is the objective's
    exact target plus 0.1 N(0, 1); z is the injected noise."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(SHAPE, generator=g) * 2 - 1
    eps = torch.randn(SHAPE, generator=g)
    x_t = q_sample(schedule, x0, t, eps)
    output = training_target(schedule, x0, eps, t, objective) + 0.1 * torch.randn(SHAPE, generator=g)
    return x_t, output, torch.randn(SHAPE, generator=g)


def arbitrary_inputs(seed: int = 0):
    """(x_t, model_output, z): independent N(0, 1) tensors, float64."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(3))


def ddim_reference(objective: str, num_steps: int = 50, **config) -> DDIMScheduler:
    ref = DDIMScheduler(
        **{**LINEAR, "set_alpha_to_one": True, "prediction_type": PREDICTION_TYPES[objective], **config}
    )
    ref.set_timesteps(num_steps)
    return ref


def pairs(timesteps: list[int]) -> dict[int, int]:
    """t -> the t_prev our `denoise` loop uses after it (-1 after the last)."""
    return {t: (timesteps[i + 1] if i + 1 < len(timesteps) else -1) for i, t in enumerate(timesteps)}


# ------------------------------------------------------------------------------------------------------ DDIM


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("objective", list(PREDICTION_TYPES))
@pytest.mark.parametrize("t", [980, 500, 20, 0])
def test_ddim_step_matches_diffusers(linear, objective, eta, t):
    ref = ddim_reference(objective)
    ours = DDIMSampler(linear, eta, objective=objective, clip_x0=False, spacing="leading")
    timesteps = [int(s) for s in ref.timesteps]
    assert ours.timesteps(50) == timesteps
    t_prev = pairs(timesteps)[t]
    # diffusers' DDIM infers the previous timestep as t - T // num_steps (negative: alpha-bar_prev = 1)
    assert t_prev == max(t - T // 50, -1)

    x_t, output, z = realistic_inputs(linear, t, objective, seed=t)
    x_prev, pred_x0 = ours.step(x_t, t, t_prev, output, noise=z)
    expected = ref.step(output, t, x_t, eta=eta, variance_noise=z)
    assert_close(pred_x0, expected.pred_original_sample)
    assert_close(x_prev, expected.prev_sample)
    if t == 0:  # the final step lands on alpha-bar_prev = 1: sigma = 0 and x_prev is pred_x0 itself
        assert max_diff(x_prev, pred_x0) < TOL


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("objective", list(PREDICTION_TYPES))
def test_ddim_step_formula_matches_diffusers_float64(linear, objective, eta):
    ref = ddim_reference(objective)
    ref.alphas_cumprod = linear.alphas_cumprod.clone()  # our float64 alpha-bars: compare only the update rule
    ours = DDIMSampler(linear, eta, objective=objective)
    x_t, output, z = arbitrary_inputs()
    for t, t_prev in pairs(ours.timesteps(50)).items():
        x_prev, pred_x0 = ours.step(x_t, t, t_prev, output, noise=z)
        expected = ref.step(output, t, x_t, eta=eta, variance_noise=z)
        assert max_diff(pred_x0, expected.pred_original_sample) < TOL_FORMULA, t
        assert max_diff(x_prev, expected.prev_sample) < TOL_FORMULA, t


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_zero_terminal_snr_v_first_step_matches_diffusers(eta):
    schedule = make_schedule("linear", T, zero_terminal_snr=True)
    ref = ddim_reference("v", rescale_betas_zero_snr=True, timestep_spacing="trailing")
    ours = DDIMSampler(schedule, eta, objective="v", spacing="trailing")
    timesteps = [int(s) for s in ref.timesteps]
    assert ours.timesteps(50) == timesteps
    t, t_prev = timesteps[0], timesteps[1]
    assert (t, t_prev) == (999, 999 - T // 50)
    assert schedule.alpha_bar(t) == 0.0 and ref.alphas_cumprod[t].item() == 0.0  # pure noise at t = 999

    x_t, output, z = realistic_inputs(schedule, t, "v")
    x_prev, pred_x0 = ours.step(x_t, t, t_prev, output, noise=z)
    expected = ref.step(output, t, x_t, eta=eta, variance_noise=z)
    assert torch.isfinite(x_prev).all()
    assert_close(pred_x0, expected.pred_original_sample)
    assert_close(x_prev, expected.prev_sample)


# ------------------------------------------------------------------------------------------------------ DDPM


def ddpm_reference(objective: str) -> DDPMScheduler:
    return DDPMScheduler(**LINEAR, variance_type="fixed_small", prediction_type=PREDICTION_TYPES[objective])


def ddpm_pair(ours: DDPMSampler, ref: DDPMScheduler, x_t, t: int, t_prev: int, output, seed: int):
    """Both steps with generators seeded alike (diffusers draws with torch.randn on the generator's device, as
    we do); also returns each generator's state before and after."""
    g_ours, g_ref = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    before = g_ours.get_state()
    x_prev, pred_x0 = ours.step(x_t, t, t_prev, output, generator=g_ours)
    expected = ref.step(output, t, x_t, generator=g_ref)
    return x_prev, pred_x0, expected, before, g_ours.get_state(), g_ref.get_state()


# diffusers' DDPM step recomputes the effective beta as 1 - a_t / a_prev from its float32 alpha-bars; at t = 1
# that cancellation gives 1.19937e-4 instead of 1.19920e-4 (1.4e-4 relative), which the x_0 coefficient
# (~0.55) carries into x_prev: ~5e-5 off. The float64 formula test below checks t = 1 at 1e-9.
DDPM_STOCK_TOL = {999: TOL, 487: TOL, 1: 2e-4, 0: TOL}


@pytest.mark.parametrize("objective", list(PREDICTION_TYPES))
@pytest.mark.parametrize("t", list(DDPM_STOCK_TOL))
def test_ddpm_step_matches_diffusers(linear, objective, t):
    ref = ddpm_reference(objective)  # no set_timesteps: all 1000 steps, t_prev = t - 1
    ours = DDPMSampler(linear, objective=objective, clip_x0=False)
    x_t, output, _ = realistic_inputs(linear, t, objective, seed=t)
    x_prev, pred_x0, expected, before, after_ours, after_ref = ddpm_pair(ours, ref, x_t, t, t - 1, output, 7)
    assert_close(pred_x0, expected.pred_original_sample, DDPM_STOCK_TOL[t])
    assert_close(x_prev, expected.prev_sample, DDPM_STOCK_TOL[t])
    assert torch.equal(after_ours, after_ref)  # the same amount of randomness consumed
    if t == 0:
        # the last step returns the posterior mean, which at t = 0 is pred_x0 itself; neither side draws noise
        assert torch.equal(after_ours, before) and torch.equal(after_ref, before)
        assert max_diff(x_prev, pred_x0) < TOL
    else:
        assert not torch.equal(after_ours, before)


def test_ddpm_step_noise_matters(linear):
    """The agreement above is not vacuous: another seed moves both samples by about the posterior std."""
    x_t, output, _ = realistic_inputs(linear, 487, "eps")
    ours = DDPMSampler(linear)
    a, _, expected, *_ = ddpm_pair(ours, ddpm_reference("eps"), x_t, 487, 486, output, seed=7)
    b, _ = ours.step(x_t, 487, 486, output, generator=torch.Generator().manual_seed(8))
    assert max_diff(a, expected.prev_sample) < TOL
    assert max_diff(a, b) > 100 * TOL


@pytest.mark.parametrize("objective", list(PREDICTION_TYPES))
def test_ddpm_step_formula_matches_diffusers_float64(linear, objective):
    ref = ddpm_reference(objective)
    ref.alphas_cumprod = linear.alphas_cumprod.clone()
    ours = DDPMSampler(linear, objective=objective)
    x_t, output, _ = arbitrary_inputs()
    for t in (999, 998, 700, 487, 100, 2, 1, 0):
        x_prev, pred_x0, expected, *_ = ddpm_pair(ours, ref, x_t, t, t - 1, output, seed=t)
        assert max_diff(pred_x0, expected.pred_original_sample) < TOL_FORMULA, t
        assert max_diff(x_prev, expected.prev_sample) < TOL_FORMULA, t


@pytest.mark.parametrize("objective", list(PREDICTION_TYPES))
@pytest.mark.parametrize("t", [990, 500, 0])
def test_ddpm_fewer_steps_matches_diffusers(linear, objective, t):
    """100 of 1000 steps: both use the effective beta of the jump, 1 - a_t / a_prev, in mean and variance."""
    ref = ddpm_reference(objective)
    ref.set_timesteps(100)
    ours = DDPMSampler(linear, objective=objective, spacing="leading")
    timesteps = [int(s) for s in ref.timesteps]
    assert ours.timesteps(100) == timesteps
    t_prev = pairs(timesteps)[t]
    assert t_prev == max(t - 10, -1)
    x_t, output, _ = realistic_inputs(linear, t, objective, seed=t)
    x_prev, pred_x0, expected, before, after_ours, after_ref = ddpm_pair(ours, ref, x_t, t, t_prev, output, 3)
    assert_close(pred_x0, expected.pred_original_sample)
    assert_close(x_prev, expected.prev_sample)
    assert torch.equal(after_ours, after_ref)
    assert torch.equal(after_ours, before) == (t == 0)


# ------------------------------------------------------------------------------------------------- timesteps


@pytest.mark.parametrize("num_steps", [10, 50, 100, 1000, 7, 3, 1])
@pytest.mark.parametrize("spacing", WHOLE_SPACINGS)
def test_timestep_sequence_matches_diffusers(spacing, num_steps):
    ref = DDIMScheduler(**LINEAR, timestep_spacing=spacing)
    ref.set_timesteps(num_steps)
    expected = [int(s) for s in ref.timesteps]
    if len(expected) != num_steps:
        # diffusers' "trailing" is np.arange(T, 0, -T / n), whose length is a floating-point ceil(T / (T / n)):
        # for 62 of the n in 1..1000 (61, 103, 121, ...) it is n + 1, the extra timestep being round(~1e-12) - 1
        # = -1 (diffusers 0.42). For every n here it is exactly n, so this skip only guards against a change.
        pytest.skip(f"diffusers returns {len(expected)} timesteps for {num_steps} with {spacing!r} spacing")
    ours = timestep_sequence(T, num_steps, spacing)
    assert ours == expected
    assert DDIMSampler(make_schedule("linear", T), spacing=spacing).timesteps(num_steps) == expected


@pytest.mark.parametrize("num_steps", [48, 61, 96, 103, 7])
def test_trailing_timesteps_are_exact(num_steps):
    """Where diffusers' "trailing" drifts, ours is the exact round(T - i T / n) - 1 (round half to even).

    np.arange(T, 0, -T / n) accumulates the rounding of its step, so besides the extra -1 above it lands just
    below or above exact .5 ties: for 49 more n in 1..1000 (48, 96, 112, ...) diffusers is 1 off at a few
    timesteps (n = 48: 936 where T - 3 T / 48 = 937.5 rounds to 938, so 937). Ours matches exact rational
    arithmetic for every n in 1..1000 (checked once; too slow for every run)."""
    exact = [round(Fraction(T) - Fraction(i * T, num_steps)) - 1 for i in range(num_steps)]
    assert timestep_sequence(T, num_steps, "trailing") == exact
