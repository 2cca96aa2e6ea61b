"""The pretrained checkpoints in assets/checkpoints/: all there, small enough, loadable, and drawing what they
were trained on (digits the reference classifier recognises, points near their toy set, labels obeyed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint, read_config
from core.metrics import predict_logits, score_samples
from core.point_metrics import evaluate_points
from core.sampler_base import draw_noise
from core.samplers import SamplingDefaults, make_sampler, sample
from core.toy_data import TOY_DATASET_NAMES

CHECKPOINTS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
EXPECTED = ["mnist_uncond", "mnist_cond", *(f"toy_{name}" for name in TOY_DATASET_NAMES)]
MAX_TOTAL_BYTES = 20 * 2**20


def draw(name: str, n: int, steps: int, labels: torch.Tensor | None = None, guidance: float = 1.0) -> torch.Tensor:
    checkpoint = load_checkpoint(CHECKPOINTS / name)
    generator = torch.Generator().manual_seed(0)
    x_T = draw_noise((n, *checkpoint.sample_shape), generator, "cpu", torch.float32)
    sampler = make_sampler("ddim", checkpoint.schedule, objective=checkpoint.objective, clip_x0=True)
    with torch.no_grad():
        return sample(checkpoint.sampling_model, sampler, x_T, steps, y=labels, guidance_scale=guidance)


def test_every_expected_checkpoint_is_shipped_within_20_mb():
    shipped = sorted(p.parent.name for p in CHECKPOINTS.glob("*/config.json"))
    assert sorted(EXPECTED) == shipped
    total = sum(f.stat().st_size for f in CHECKPOINTS.rglob("*") if f.is_file())
    assert total <= MAX_TOTAL_BYTES, f"{total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", EXPECTED)
def test_checkpoint_loads_with_ema_weights_and_no_training_state(name):
    checkpoint = load_checkpoint(CHECKPOINTS / name)
    assert checkpoint.ema_model is not None and checkpoint.sampling_model is checkpoint.ema_model
    assert not (CHECKPOINTS / name / "training_state.safetensors").exists()
    assert checkpoint.step > 0


@pytest.mark.parametrize("name", EXPECTED)
def test_checkpoint_records_the_sampler_settings_it_samples_best_with(name):
    """The digit models: DPM-Solver++(2M) SDE, 10 steps, trailing (benchmarks/RESULTS.md "Sampler quality:
    mnist_uncond": the best at 10 network calls); the eps toys: DDIM-50, eta 1, leading (better than eta 0 on
    average). Written into config.json after training, so the load also proves that the weights' recorded hashes
    still hold."""
    digits = name.startswith("mnist")
    expected = (
        SamplingDefaults("dpmpp_2m_sde", 10, 0.0, "trailing")
        if digits
        else SamplingDefaults("ddim", 50, 1.0, "leading")
    )
    assert load_checkpoint(CHECKPOINTS / name).sampling_defaults == expected
    recorded = read_config(CHECKPOINTS / name)["sampling_defaults"]
    assert recorded == (expected.to_dict() if digits else {"sampler": "ddim", "steps": 50, "eta": 1.0})


def test_unconditional_digits_are_recognised_and_score_near_real_digits():
    samples = draw("mnist_uncond", 100, 20)
    assert samples.shape == (100, 1, 28, 28) and bool(torch.isfinite(samples).all())
    scores = score_samples(samples, "mnist5k")  # on the report split; DDIM-20, eta 0: FD about 2x its floor
    assert scores["fd"] < 3 * scores["fd_real_floor"], scores
    assert scores["confident_fraction"] >= 0.8 and sum(c > 0 for c in scores["class_histogram"]) >= 8, scores
    assert scores["precision"] >= 0.75 * scores["precision_real_floor"], scores
    assert scores["recall"] >= 0.75 * scores["recall_real_floor"], scores


def test_conditional_model_draws_the_requested_digit_with_guidance():
    labels = torch.arange(10).repeat(5)
    samples = draw("mnist_cond", 50, 20, labels=labels, guidance=3.0)
    accuracy = (predict_logits(samples).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.8, accuracy


@pytest.mark.parametrize("name", TOY_DATASET_NAMES)
def test_toy_model_samples_lie_near_its_data(name):
    samples = draw(f"toy_{name}", 1000, 50)
    metrics = evaluate_points(samples, name)
    noise = evaluate_points(torch.randn(1000, 2, generator=torch.Generator().manual_seed(1)), name)
    assert metrics["sliced_wasserstein"] < 0.25 * noise["sliced_wasserstein"], (metrics, noise)
    # and on the data, not between its parts (the old spiral model, a disk, was at 3.2x the floor)
    assert metrics["nn_distance"] < 2.0 * metrics["nn_real_floor"], metrics
