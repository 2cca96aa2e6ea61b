"""Schedules: numbers from the literature, equality with diffusers, derived coefficients, bad parameters."""

import pytest
import torch
from diffusers import DDPMScheduler

from core.schedules import SCHEDULE_NAMES, make_schedule, schedule_from_params

DIFFUSERS_NAMES = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
    "scaled_linear": "scaled_linear",
}


def first_below_half(schedule):
    return int((schedule.alphas_cumprod < 0.5).nonzero()[0])


def test_linear_alpha_bar_matches_published_values():
    s = make_schedule("linear", 1000)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.036e-05, rel=1e-3)
    assert s.alphas_cumprod[499].item() == pytest.approx(0.0786, abs=5e-5)
    assert first_below_half(s) == 259


def test_cosine_alpha_bar_matches_published_values():
    s = make_schedule("cosine", 1000)
    assert s.alphas_cumprod[-1].item() == pytest.approx(2.429e-09, rel=1e-3)
    assert s.alphas_cumprod[499].item() == pytest.approx(0.4938, abs=5e-5)
    assert first_below_half(s) == 496
    assert s.betas.max().item() <= 0.999


def test_posterior_variance_at_487_matches_diffusers_test_value():
    # diffusers' DDPM scheduler test pins this number for the linear schedule
    assert make_schedule("linear").posterior_variance[487].item() == pytest.approx(0.0097915, abs=1e-6)


@pytest.mark.parametrize("zero_terminal_snr", [False, True])
@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_alphas_cumprod_equal_diffusers(name, zero_terminal_snr):
    ours = make_schedule(name, 1000, zero_terminal_snr=zero_terminal_snr)
    theirs = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule=DIFFUSERS_NAMES[name],
        beta_start=1e-4,
        beta_end=0.02,
        rescale_betas_zero_snr=zero_terminal_snr,
    )
    assert (ours.alphas_cumprod - theirs.alphas_cumprod.double()).abs().max().item() < 1e-6


def test_diffusers_config_export_rebuilds_the_same_schedule():
    for name in SCHEDULE_NAMES:
        ours = make_schedule(name, 500, zero_terminal_snr=name == "sigmoid")
        theirs = DDPMScheduler.from_config(ours.to_diffusers_config())
        assert (ours.alphas_cumprod - theirs.alphas_cumprod.double()).abs().max().item() < 1e-6


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_derived_coefficients_are_consistent(name):
    s = make_schedule(name, 300)
    assert all(v.dtype == torch.float64 for v in (s.betas, s.alphas_cumprod, s.posterior_variance, s.snr))
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - s.betas, 0))
    assert torch.allclose(s.alphas_cumprod_prev[1:], s.alphas_cumprod[:-1]) and s.alphas_cumprod_prev[0] == 1
    assert torch.allclose(
        s.sqrt_alphas_cumprod**2 + s.sqrt_one_minus_alphas_cumprod**2, torch.ones(300, dtype=torch.float64)
    )
    assert torch.allclose(s.log_snr, torch.log(s.alphas_cumprod / (1 - s.alphas_cumprod)))
    assert bool((s.log_snr[1:] < s.log_snr[:-1]).all()), "log-SNR must fall monotonically"
    # posterior mean of x_{t-1} given x_0 and x_t, eq. 7, equals the Bayes formula written out
    a, ap, b = s.alphas_cumprod, s.alphas_cumprod_prev, s.betas
    assert torch.allclose(s.posterior_mean_coef1, ap.sqrt() * b / (1 - a))
    assert torch.allclose(s.posterior_variance, b * (1 - ap) / (1 - a))
    assert s.posterior_variance[0] == 0


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_zero_terminal_snr_ends_in_pure_noise_and_keeps_the_start(name):
    plain, rescaled = make_schedule(name), make_schedule(name, zero_terminal_snr=True)
    assert rescaled.alphas_cumprod[-1] == 0 and rescaled.snr[-1] == 0 and rescaled.has_zero_terminal_snr
    assert rescaled.alphas_cumprod[0].item() == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-12)
    assert not plain.has_zero_terminal_snr


def test_at_broadcasts_per_sample_coefficients():
    s = make_schedule("linear", 100)
    t = torch.tensor([0, 50, 99])
    c = s.at(s.sqrt_alphas_cumprod, t, (3, 1, 8, 8), dtype=torch.float32)
    assert c.shape == (3, 1, 1, 1) and c.dtype == torch.float32
    assert torch.allclose(c.flatten(), s.sqrt_alphas_cumprod[t].float())
    assert s.at(s.betas, 7, (2, 3)).shape == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="quadratic"), "linear, cosine, sigmoid, scaled_linear"),
        (dict(num_timesteps=1), "num_timesteps must be an integer >= 2"),
        (dict(num_timesteps=10.5), "num_timesteps"),
        (dict(beta_start=0.0), "beta_start must be in (0, 1)"),
        (dict(beta_end=1.5), "beta_end must be in (0, 1)"),
        (dict(beta_start=0.02, beta_end=0.01), "must be smaller than beta_end"),
        (dict(name="cosine", cosine_s=-0.1), "cosine_s must be in (0, 1)"),
    ],
)
def test_bad_parameters_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_schedule(**kwargs)


def test_params_rebuild_the_schedule():
    s = make_schedule("sigmoid", 250, beta_start=2e-4, beta_end=0.03, zero_terminal_snr=True)
    assert torch.equal(schedule_from_params(s.params).betas, s.betas)
    with pytest.raises(ValueError, match="unknown schedule parameters"):
        schedule_from_params({**s.params, "evil": 1})
