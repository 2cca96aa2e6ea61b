"""Closed forms of the forward process, conversions between objectives, and the training loss."""

import math

import pytest
import torch

from core.diffusion import (
    draw_timesteps,
    loss_weight,
    predict_eps,
    predict_v,
    predict_x0,
    q_posterior,
    q_sample,
    q_step,
    training_loss,
    velocity,
)
from core.schedules import make_schedule


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("cosine", 1000)


def batch(seed=0, shape=(4, 1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_conversions_invert_q_sample(schedule, objective):
    x0, eps = batch()
    t = torch.tensor([0, 10, 500, 998])
    x_t = q_sample(schedule, x0, t, eps)
    output = {"eps": eps, "x0": x0, "v": velocity(schedule, x0, eps, t)}[objective]
    assert torch.allclose(predict_x0(schedule, x_t, t, output, objective), x0, atol=1e-9)
    assert torch.allclose(predict_eps(schedule, x_t, t, output, objective), eps, atol=1e-9)
    assert torch.allclose(
        predict_v(schedule, x_t, t, output, objective),
        output if objective == "v" else velocity(schedule, x0, eps, t),
        atol=1e-9,
    )


def test_round_trip_eps_to_v_to_x0(schedule):
    x0, eps = batch(1)
    t = torch.tensor([3, 300, 600, 900])
    x_t = q_sample(schedule, x0, t, eps)
    v = predict_v(schedule, x_t, t, eps, "eps")
    x0_from_v = predict_x0(schedule, x_t, t, v, "v")
    eps_back = predict_eps(schedule, x_t, t, x0_from_v, "x0")
    assert torch.allclose(eps_back, eps, atol=1e-8)


def test_q_sample_equals_iterating_single_steps_in_distribution():
    """Mean and variance of x_t from the closed form equal those of t iterated q(x_t | x_{t-1}) steps."""
    s = make_schedule("linear", 1000)
    n, x0_value, t = 200_000, 0.8, 300
    g = torch.Generator().manual_seed(0)
    x = torch.full((n,), x0_value, dtype=torch.float64)
    for step in range(t + 1):  # steps 0..t
        x = q_step(s, x, step, torch.randn(n, generator=g, dtype=torch.float64))
    direct = q_sample(
        s, torch.full((n,), x0_value, dtype=torch.float64), t, torch.randn(n, generator=g, dtype=torch.float64)
    )
    mean, var = s.sqrt_alphas_cumprod[t].item() * x0_value, 1 - s.alphas_cumprod[t].item()
    # standard errors of the sample mean and sample variance of n normal draws; 5 sigma
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / (n - 1))
    for sample in (x, direct):
        assert abs(sample.mean().item() - mean) < 5 * se_mean
        assert abs(sample.var().item() - var) < 5 * se_var


def test_q_posterior_is_the_bayes_posterior(schedule):
    """Combine q(x_t | x_{t-1}) with q(x_{t-1} | x_0) by Bayes' rule for Gaussians and compare with eq. 7."""
    x0, eps = batch(2)
    t = 400
    x_t = q_sample(schedule, x0, t, eps)
    mean, var = q_posterior(schedule, x0, x_t, t)
    a_prev, beta = schedule.alphas_cumprod[t - 1].item(), schedule.betas[t].item()
    prior_mean, prior_var = math.sqrt(a_prev) * x0, 1 - a_prev
    precision = 1 / prior_var + (1 - beta) / beta
    bayes_mean = (prior_mean / prior_var + math.sqrt(1 - beta) * x_t / beta) / precision
    assert torch.allclose(mean, bayes_mean, atol=1e-10)
    assert var.item() == pytest.approx(1 / precision, rel=1e-9)


class ConstantModel(torch.nn.Module):
    """Predicts a fixed value; records what it was called with."""

    def __init__(self, value=0.0, num_classes=None):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value))
        self.num_classes = num_classes
        self.seen_labels = None

    def forward(self, x, t, y=None):
        self.seen_labels = y
        return torch.zeros_like(x) + self.value


def test_training_loss_of_zero_predictor_equals_target_power(schedule):
    x0 = torch.full((512, 1, 4, 4), 0.5)
    g = torch.Generator().manual_seed(0)
    eps_loss = training_loss(ConstantModel(), schedule, x0, objective="eps", generator=g)
    assert eps_loss.loss.item() == pytest.approx(1.0, abs=0.05)  # E[eps^2] = 1
    x0_loss = training_loss(ConstantModel(), schedule, x0, objective="x0", generator=g)
    assert x0_loss.loss.item() == pytest.approx(0.25, abs=1e-6)
    assert eps_loss.per_sample.shape == (512,) and eps_loss.t.min() >= 0 and eps_loss.t.max() < 1000


def test_training_loss_is_reproducible_with_a_generator(schedule):
    x0 = torch.randn(8, 1, 4, 4)
    a = training_loss(ConstantModel(0.1), schedule, x0, generator=torch.Generator().manual_seed(3))
    b = training_loss(ConstantModel(0.1), schedule, x0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.per_sample, b.per_sample) and torch.equal(a.t, b.t)


def test_label_dropout_uses_the_no_class_token(schedule):
    model = ConstantModel(num_classes=10)
    y = torch.zeros(4000, dtype=torch.long)
    training_loss(
        model, schedule, torch.zeros(4000, 1, 2, 2), y=y, p_uncond=0.25, generator=torch.Generator().manual_seed(0)
    )
    dropped = (model.seen_labels == 10).float().mean().item()
    assert dropped == pytest.approx(0.25, abs=5 * math.sqrt(0.25 * 0.75 / 4000))
    assert set(model.seen_labels.unique().tolist()) == {0, 10}
    with pytest.raises(ValueError, match="class-conditional"):
        training_loss(ConstantModel(), schedule, torch.zeros(2, 1, 2, 2), y=y[:2], p_uncond=0.1)


def test_min_snr_weights():
    snr = torch.tensor([0.0, 0.5, 5.0, 100.0])
    assert torch.allclose(loss_weight(snr, "eps", "min_snr"), torch.tensor([1.0, 1.0, 1.0, 0.05]))
    assert torch.allclose(loss_weight(snr, "x0", "min_snr"), torch.tensor([0.0, 0.5, 5.0, 5.0]))
    assert torch.allclose(loss_weight(snr, "v", "min_snr"), torch.tensor([0.0, 0.5 / 1.5, 5 / 6, 5 / 101]))
    assert torch.equal(loss_weight(snr, "eps", "none"), torch.ones(4))
    with pytest.raises(ValueError, match="none, min_snr"):
        loss_weight(snr, "eps", "p2")


def test_min_snr_turns_every_objective_into_the_same_x0_error(schedule):
    """With min-SNR weights, an equal x0 error costs min(SNR, 5) * err^2 whatever the objective."""
    x_err = 0.1
    for objective in ("eps", "x0", "v"):
        t = torch.tensor([100, 700])
        snr = schedule.snr[t].float()
        # an x0 error of e is an eps error of -e sqrt(SNR) and a v error of -e sqrt(SNR + 1)
        factor = {"eps": snr.sqrt(), "x0": torch.ones(2), "v": (snr + 1).sqrt()}[objective]
        weighted = loss_weight(snr, objective, "min_snr") * (x_err * factor) ** 2
        assert torch.allclose(weighted, snr.clamp(max=5) * x_err**2, rtol=1e-5)


def test_unknown_objective_is_refused(schedule):
    with pytest.raises(ValueError, match="eps, x0, v"):
        training_loss(ConstantModel(), schedule, torch.zeros(2, 1, 2, 2), objective="score")


def test_logit_normal_timesteps_practise_the_middle_as_its_closed_form_says():
    """t = floor(T sigmoid(n)), n ~ N(0, 1): P(T/4 <= t < 3T/4) = P(|n| < ln 3) = 0.728 (uniform: 0.5); every draw
    is a timestep, the same generator seed gives the same draws, and an unknown name is refused."""
    T, n = 1000, 200_000
    t = draw_timesteps(T, n, "logit_normal", generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) <= T - 1
    middle = ((t >= T // 4) & (t < 3 * T // 4)).float().mean().item()
    assert middle == pytest.approx(math.erf(math.log(3) / math.sqrt(2)), abs=0.005)  # 0.728
    assert float(t.float().median()) == pytest.approx(T / 2, abs=5)
    uniform = draw_timesteps(T, n, "uniform", generator=torch.Generator().manual_seed(0))
    assert ((uniform >= T // 4) & (uniform < 3 * T // 4)).float().mean().item() == pytest.approx(0.5, abs=0.005)
    again = draw_timesteps(T, n, "logit_normal", generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    with pytest.raises(ValueError, match="unknown timestep sampling 'cubic'; choose one of uniform, logit_normal"):
        draw_timesteps(T, 4, "cubic")


def test_the_loss_draws_its_timesteps_by_the_given_sampling():
    """training_loss's t come from draw_timesteps with the same generator: uniform is the default."""
    schedule = make_schedule("cosine", 1000)
    x0 = torch.zeros(64, 2)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    for sampling in ("uniform", "logit_normal"):
        result = training_loss(
            model, schedule, x0, objective="x0", timestep_sampling=sampling, generator=torch.Generator().manual_seed(3)
        )
        expected = draw_timesteps(1000, 64, sampling, generator=torch.Generator().manual_seed(3))
        assert torch.equal(result.t, expected)
    default = training_loss(model, schedule, x0, objective="x0", generator=torch.Generator().manual_seed(3))
    assert torch.equal(default.t, draw_timesteps(1000, 64, generator=torch.Generator().manual_seed(3)))
