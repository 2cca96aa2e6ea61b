"""core.sampler_sweep: quality against network calls, on a shipped 2D model (fast) and a shipped digit model."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint
from core.sampler_sweep import (
    REFERENCE,
    SWEEP_SAMPLERS,
    SamplerChoice,
    mean_by_label,
    quality_value,
    read_quality,
    sweep,
    write_quality,
)

CHECKPOINTS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


def test_heun_needs_about_half_the_steps_for_the_same_calls() -> None:
    heun, ddim = SamplerChoice("heun"), SamplerChoice("ddim")
    assert [heun.steps_for(c) for c in (5, 10, 20)] == [3, 5, 10]
    assert [heun.calls_for(heun.steps_for(c)) for c in (5, 10, 20)] == [5, 9, 19]
    assert ddim.steps_for(10) == ddim.calls_for(10) == 10
    assert {c.name for c in SWEEP_SAMPLERS} == {"ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde"}
    assert SamplerChoice("ddim", 1.0, "trailing").label == "ddim eta 1, trailing"


def test_a_sweep_of_a_2d_model_gets_better_with_more_calls(tmp_path) -> None:
    checkpoint = load_checkpoint(CHECKPOINTS / "toy_moons")
    choice = SamplerChoice("dpmpp_2m")
    plan = [(REFERENCE, checkpoint.schedule.num_timesteps), (choice, 1), (choice, 10)]
    points = list(sweep(checkpoint, plan, n=400, seeds=(0, 1)))
    assert [(p.label, p.calls, p.seed) for p in points] == [
        (REFERENCE.label, 1000, 0), (choice.label, 1, 0), (choice.label, 10, 0),
        (REFERENCE.label, 1000, 1), (choice.label, 1, 1), (choice.label, 10, 1),
    ]  # fmt: skip
    assert all(set(p.metrics) == {"points"} and p.seconds > 0 for p in points)
    curves = mean_by_label(points, "points")
    one_call, ten_calls = curves[choice.label]
    assert one_call[0] == 1 and ten_calls[0] == 10
    assert ten_calls[1] < one_call[1] / 2  # one call lands every point on the mean; ten find the moons
    assert ten_calls[1] < 3 * curves[REFERENCE.label][0][1]
    path = write_quality(points, tmp_path / "quality.json")
    assert read_quality(path) == points


def test_a_digit_sweep_scores_both_splits() -> None:
    checkpoint = load_checkpoint(CHECKPOINTS / "mnist_uncond")
    (point,) = sweep(checkpoint, [(SamplerChoice("dpmpp_2m"), 5)], n=100, splits=("report", "tune"))
    assert set(point.metrics) == {"report", "tune"} and point.calls == 5
    assert point.metrics["report"]["kind"] == "digits" and point.metrics["tune"]["split"] == "tune"
    assert quality_value(point.metrics["report"]) == point.metrics["report"]["fd"]


def test_a_file_that_is_not_a_record_is_refused(tmp_path) -> None:
    bad = tmp_path / "q.json"
    bad.write_text('{"points": [{"label": 1}]}')
    with pytest.raises(ValueError, match="is not a sampler quality record"):
        read_quality(bad)
