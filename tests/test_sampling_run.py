"""Live sampling for the Sample tab: one record per step, a trajectory that replays them, a GIF with one frame per
saved step, compare mode from the same x_T, Stop between steps, and every parameter checked."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from core.samplers import make_sampler, sample
from explorer.models import DEFAULT_MODEL, PRETRAINED, pretrained, pretrained_names
from explorer.sampling_run import (
    EACH_CLASS,
    SAMPLER_LABELS,
    SamplerSettings,
    check_request,
    check_settings,
    class_labels,
    run_sampling,
    sample_request,
    starting_noise,
)
from explorer.trajectory import MAX_SAVED_STEPS, saved_step_indices

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def moons():
    return pretrained(PRETRAINED["toy_moons"])


def test_every_shipped_model_is_in_the_menu():
    assert pretrained_names() == list(PRETRAINED.values())
    assert pretrained("no such model") is None


def test_every_shipped_model_offers_the_sampler_settings_it_records():
    """The Sample tab starts from these: each shipped checkpoint's record is a setting the tab offers and accepts."""
    for name in PRETRAINED.values():
        entry = pretrained(name)
        defaults = entry.sampling_defaults
        label = SAMPLER_LABELS[defaults.sampler]
        settings = check_settings(entry, label, defaults.steps, defaults.eta, defaults.spacing)
        assert (settings.sampler, settings.steps, settings.spacing) == (
            defaults.sampler,
            defaults.steps,
            defaults.spacing,
        )
        assert settings.calls == defaults.network_calls


def test_sampling_yields_one_record_per_step_and_matches_core(digits):
    request = check_request(digits, "DDIM", 12, 0.0, 5, 4, spacing="leading")
    records = list(sample_request(digits, request))
    assert [step.index for step, _ in records] == list(range(12))
    trajectory = records[-1][1]
    assert trajectory.complete and len(trajectory) == 12 and len(trajectory.timesteps) == 12
    assert trajectory.timesteps == make_sampler("ddim", digits.checkpoint.schedule).timesteps(12)
    # the same x_T through core's own loop gives the same final sample
    sampler = make_sampler("ddim", digits.checkpoint.schedule, objective=digits.checkpoint.objective, clip_x0=True)
    expected = sample(digits.model, sampler, starting_noise(digits, 4, 5), 12)
    assert torch.allclose(trajectory.final, expected, atol=1e-6)
    x_t, x0, eps = trajectory.pictures(len(trajectory) - 1)
    assert x_t.shape == x0.shape == eps.shape and x_t.dtype == np.uint8
    assert trajectory.caption(11).endswith("now the clean sample")


def test_the_same_seed_gives_the_same_samples_and_another_does_not(digits):
    def final(seed, sampler="DDPM"):
        request = check_request(digits, sampler, 10, 1.0, seed, 3)
        return list(sample_request(digits, request))[-1][1].final

    assert torch.equal(final(3), final(3))
    assert not torch.equal(final(3), final(4))


def test_compare_mode_starts_both_sides_from_the_same_x_T(digits):
    request = check_request(digits, "DDIM", 8, 0.0, 11, 4)
    other = SamplerSettings("ddpm", 20, 1.0, "leading")
    a = list(sample_request(digits, request))[-1][1]
    b = list(sample_request(digits, request, other))[-1][1]
    assert torch.equal(a.x_T, b.x_T) and torch.equal(a.x_T, starting_noise(digits, 4, 11).cpu())
    assert len(a.timesteps) == 8 and len(b.timesteps) == 20 and not torch.equal(a.final, b.final)


def test_a_long_run_keeps_evenly_spaced_steps_within_budget(digits):
    indices = saved_step_indices(1000)
    assert len(indices) == MAX_SAVED_STEPS and indices[0] == 0 and indices[-1] == 999
    assert saved_step_indices(7) == list(range(7))
    request = check_request(digits, "DDPM", 300, 1.0, 0, 2)
    trajectory = list(sample_request(digits, request))[-1][1]
    assert len(trajectory.timesteps) == 300 and len(trajectory) == MAX_SAVED_STEPS
    assert trajectory.saved[0] == 0 and trajectory.saved[-1] == 299 and trajectory.complete


def test_gif_has_one_frame_per_saved_step(digits, tmp_path):
    request = check_request(digits, "DDIM", 9, 0.0, 0, 4)
    trajectory = list(sample_request(digits, request))[-1][1]
    path = trajectory.write_gif(tmp_path / "run.gif")
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == len(trajectory) == 9
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("L"))
    first = np.asarray(Image.open(path).convert("L"))
    assert not np.array_equal(first, last)  # noise at the start, digits at the end


def test_stop_ends_the_run_between_steps(digits):
    request = check_request(digits, "DDIM", 50, 0.0, 0, 2)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    records = list(sample_request(digits, request, stop=stop))
    assert len(records) == 3 and not records[-1][1].complete


def test_conditional_labels_and_guidance(digits):
    cond = pretrained(PRETRAINED["mnist_cond"])
    request = check_request(cond, "DDIM", 4, 0.0, 0, 12, EACH_CLASS, 3.0)
    assert request.guidance == 3.0
    assert class_labels(cond, 12, EACH_CLASS).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert class_labels(cond, 2, 7).tolist() == [7, 7]
    assert check_request(digits, "DDIM", 4, 0.0, 0, 2, 3, 5.0).label is None  # unconditional: no class, no guidance
    assert list(sample_request(cond, request))[-1][1].complete


def test_2d_models_record_points_and_paths(moons):
    request = check_request(moons, "DDIM", 10, 0.0, 0, 300)
    trajectory = list(sample_request(moons, request))[-1][1]
    paths = trajectory.paths()
    assert paths.shape == (300, 11, 2) and np.allclose(paths[:, 0], trajectory.x_T.numpy())
    assert np.allclose(paths[:, -1], trajectory.final.numpy())
    picture = trajectory.pictures(0)[0]
    assert picture.shape[2] == 3 and trajectory.reference is not None
    # samples end far closer to the data than the noise they started from
    data = torch.as_tensor(trajectory.reference)
    start = torch.cdist(trajectory.x_T, data).min(1).values.mean()
    end = torch.cdist(trajectory.final, data).min(1).values.mean()
    assert end < 0.5 * start


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("GAN", 10, 0, 0, 4), "sampler must be one of DDPM, DDIM, Euler, Euler ancestral, Heun, DPM\\+\\+ 2M, "),
        (("DDIM", 0, 0, 0, 4), "steps must be a whole number from 1 to 1000"),
        (("DDIM", 1001, 0, 0, 4), "steps must be a whole number from 1 to 1000"),
        (("DDIM", 2.5, 0, 0, 4), "steps must be a whole number"),
        (("DDIM", 10, -0.1, 0, 4), "eta must be from 0 to 1"),
        (("DDIM", 10, math.nan, 0, 4), "eta must be a finite number"),
        (("DDIM", 10, 0, -1, 4), "seed must be a whole number from 0"),
        (("DDIM", 10, 0, 2**31, 4), "seed must be a whole number from 0"),
        (("DDIM", 10, 0, 0, 0), "number of images must be a whole number from 1 to 64"),
        (("DDIM", 10, 0, 0, 65), "number of images must be a whole number from 1 to 64"),
        (("DDIM", 10, 0, 0, None), "number of images must be a number"),
        (("DDIM", "ten", 0, 0, 4), "steps must be a number"),
    ],
)
def test_bad_parameters_are_refused_with_a_message(digits, args, message):
    with pytest.raises(ValueError, match=message):
        check_request(digits, *args)


def test_bad_class_and_guidance_are_refused():
    cond = pretrained(PRETRAINED["mnist_cond"])
    with pytest.raises(ValueError, match="class must be a whole number from -1 to 9"):
        check_request(cond, "DDIM", 10, 0, 0, 4, 10, 1.0)
    with pytest.raises(ValueError, match="guidance must be from 0 to 10"):
        check_request(cond, "DDIM", 10, 0, 0, 4, 3, 11)
    with pytest.raises(ValueError, match="guidance must be a finite number"):
        check_request(cond, "DDIM", 10, 0, 0, 4, 3, math.inf)


def test_run_sampling_runs_every_step_through_compute(digits):
    calls = []

    def compute(fn):
        calls.append(fn)
        return fn()

    x_T = starting_noise(digits, 2, 0)
    records = list(run_sampling(digits, SamplerSettings("ddim", 6), x_T, seed=0, compute=compute))
    assert len(records) == 6 and len(calls) == 7  # six steps and the call that finds the end
