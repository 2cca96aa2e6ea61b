"""Reference classifier, feature network and sample-quality metrics: the shipped networks' accuracy, the Fréchet
distance's maths against closed forms, metrics that rank real digits above blurred digits and noise, the 2D sliced
Wasserstein distance, and `python -m core evaluate` end to end (the calibration ladder: test_metric_calibration.py)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from core.calibration import blur
from core.classifier import (
    CLASSIFIER_DIR,
    FEATURE_NET_DIR,
    FEATURE_NET_KIND,
    load_classifier,
    load_feature_network,
    load_reference_classifier,
)
from core.classifier_training import accuracy, train_classifier
from core.cli import main
from core.data import load_dataset
from core.distances import feature_frechet_distance, fit_gaussian, gaussian_frechet_distance
from core.metrics import (
    class_entropy,
    classifier_features,
    confident_fraction,
    digit_features,
    evaluate_samples,
    frechet_distance,
    real_floor,
    real_scores,
)
from core.point_metrics import evaluate_points, nearest_neighbour_distance, sliced_wasserstein


@pytest.fixture(scope="module")
def heldout():
    return load_dataset("mnist5k", split="test", image_size=32)


@pytest.fixture(scope="module")
def halves(heldout):
    """Two disjoint random halves (500 + 500) of the held-out digits: samples and reference."""
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(7))
    return heldout.images[order[:500]], heldout.images[order[500:]]


# ------------------------------------------------------------------------------------------ the shipped classifier


def test_shipped_classifier_reaches_98_percent_on_the_heldout_split(heldout):
    classifier = load_reference_classifier()
    measured = accuracy(classifier, heldout.images, heldout.labels)
    assert measured >= 0.98
    config = json.loads((CLASSIFIER_DIR / "config.json").read_text())
    assert config["heldout_accuracy"] == pytest.approx(measured, abs=2e-3)
    assert config["training"]["split"] == "train" and config["training"]["n_train"] == 4000
    assert config["package_version"] and config["model"]["type"] == "digit_classifier"
    assert (CLASSIFIER_DIR / "model.safetensors").stat().st_size < 1_000_000
    assert load_reference_classifier() is classifier  # cached
    assert classifier_features(heldout.images[:3]).shape == (3, classifier.feature_dim)


def test_shipped_feature_network_is_a_plain_classifier_of_the_same_architecture(heldout):
    network = load_feature_network()
    assert accuracy(network, heldout.images, heldout.labels) >= 0.98
    config = json.loads((FEATURE_NET_DIR / "config.json").read_text())
    assert config["kind"] == FEATURE_NET_KIND and config["training"]["outlier_exposure"] == "none"
    assert config["training"]["split"] == "train" and config["model"] == load_reference_classifier().config
    assert load_feature_network() is network and network is not load_reference_classifier()
    assert digit_features(heldout.images[:3]).shape == (3, network.feature_dim)
    with pytest.raises(ValueError, match="not a reference-digit-classifier config"):
        load_classifier(FEATURE_NET_DIR)  # the kinds are not interchangeable


def test_a_damaged_weights_file_is_refused(tmp_path):
    copy = tmp_path / "classifier"
    shutil.copytree(CLASSIFIER_DIR, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match"):
        load_classifier(copy)
    with pytest.raises(FileNotFoundError, match=r"train_classifier\.py"):
        load_classifier(tmp_path / "nowhere")


def test_training_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    runs = [train_classifier(epochs=1, limit=128, batch_size=64, seed=s) for s in (3, 3, 4)]
    assert torch.equal(torch.random.get_rng_state(), state)
    weights = [run.model.state_dict()["head.1.weight"] for run in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert runs[0].settings["n_train"] == 128 and 0 <= runs[0].heldout_accuracy <= 1


# ------------------------------------------------------------------------------------------ Fréchet distance maths


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64), torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64)
    s1, s2 = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64), torch.tensor([2.0, 1.0, 9.0], dtype=torch.float64)
    expected = float(((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum())
    got = gaussian_frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)
    # by hand: ||(-1, 0, -2.5)||^2 = 7.25; (1 + 2 - 2 sqrt 2) + (4 + 1 - 4) + (0.25 + 9 - 3)
    assert got == pytest.approx(7.25 + (3 - 2 * math.sqrt(2)) + 1 + 6.25, rel=1e-12)


def test_frechet_distance_matches_the_eigenvalues_of_s1_s2_for_full_covariances():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 6, generator=g, dtype=torch.float64), torch.randn(6, 6, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64), b @ b.T
    mu1, mu2 = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    # Tr((S1 S2)^(1/2)) = sum of square roots of the (real, non-negative) eigenvalues of S1 S2
    trace_sqrt = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0).sqrt().sum()
    expected = float((mu1 - mu2) @ (mu1 - mu2) + torch.trace(s1) + torch.trace(s2) - 2 * trace_sqrt)
    assert gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(gaussian_frechet_distance(mu2, s2, mu1, s1))
    assert gaussian_frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_feature_frechet_distance_is_zero_on_itself_symmetric_and_estimates_the_gaussians():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5, 1.0])
    y = torch.randn(20000, 4, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert feature_frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert feature_frechet_distance(x, y) == pytest.approx(feature_frechet_distance(y, x), rel=1e-9)
    # N(0, diag(1, 4, 0.25, 1)) vs N(e1, I): 1 + (1 + 1 - 2) + (4 + 1 - 4) + (0.25 + 1 - 1) + 0 = 2.25
    assert feature_frechet_distance(x, y) == pytest.approx(2.25, abs=0.1)
    mean, cov = fit_gaussian(x)
    assert mean.dtype == torch.float64 and cov.shape == (4, 4)
    with pytest.raises(ValueError, match="N >= 2"):
        fit_gaussian(x[:1])


# ------------------------------------------------------------------------------------------ metrics on images


def test_metrics_rank_real_digits_far_above_blurred_digits_and_noise(halves):
    samples, reference = halves
    noise = torch.randn(500, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    uniform = torch.rand(500, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    fd_real = frechet_distance(samples, reference)
    fd_blur = frechet_distance(blur(samples, 1.0), reference)
    fd_noise = frechet_distance(noise, reference)
    assert fd_real * 10 < fd_blur < fd_noise / 10  # the old features put noise and 2-px blur at one value
    assert fd_real * 10 < frechet_distance(uniform, reference)
    assert frechet_distance(samples) < 3 * real_floor(500)  # default reference: the report split's 500 digits
    assert frechet_distance(samples, samples) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(reference, samples) == pytest.approx(fd_real, rel=1e-6)
    assert confident_fraction(samples) > 0.95
    assert confident_fraction(noise) < 0.1 and confident_fraction(uniform) < 0.1
    assert confident_fraction(blur(samples, 1.0)) < confident_fraction(samples)
    assert confident_fraction(samples, threshold=0.5) >= confident_fraction(samples, threshold=0.99)


def test_class_entropy_is_log_10_for_heldout_digits_and_0_for_one_digit(heldout):
    assert class_entropy(heldout.images) == pytest.approx(math.log(10), abs=0.01)
    assert class_entropy(heldout.images[:1].expand(50, -1, -1, -1)) == 0.0
    ones = heldout.images[heldout.labels == 1]
    assert class_entropy(ones) < 0.1


def test_evaluate_samples_and_the_real_floor(halves, heldout):
    samples, _ = halves
    result = evaluate_samples(samples)
    assert set(result) == {
        "fd", "precision", "recall", "confident_fraction", "class_entropy", "class_histogram", "n", "split"
    }  # fmt: skip
    assert result["n"] == 500 and sum(result["class_histogram"]) == 500 and len(result["class_histogram"]) == 10
    assert result["class_entropy"] == pytest.approx(math.log(10), abs=0.02) and result["split"] == "report"
    floor = real_floor(500)  # the tune split's 500 digits against the report split's 500
    assert floor == real_scores(500)["fd"] and real_floor(200) != real_floor(200, seed=1)
    assert 0 < floor < frechet_distance(blur(samples, 1.0)) / 10
    assert real_floor(50) > real_floor(200) > floor  # FD is biased upward at small n
    assert real_floor(1000) > 0  # n > 500: bootstrap
    assert real_floor(500, split="tune") == pytest.approx(floor)  # the same two sets, the other way round
    assert 0.8 < real_scores(500)["precision"] <= 1 and 0.8 < real_scores(500)["recall"] <= 1
    with pytest.raises(ValueError, match="unknown reference split 'test'"):
        evaluate_samples(samples, split="test")
    # digits at 28x28 are padded to 32x32 like the dataset: the same features
    small = load_dataset("mnist5k", split="test", image_size=28).images[:8]
    assert torch.allclose(classifier_features(small), classifier_features(heldout.images[:8]))
    assert torch.allclose(digit_features(small), digit_features(heldout.images[:8]))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(4, 3, 32, 32), "1-channel"),
        (torch.zeros(4, 32, 32), "1-channel"),
        (torch.full((4, 1, 32, 32), float("nan")), "NaN"),
        (torch.zeros(0, 1, 32, 32), "empty"),
        (torch.zeros(1, 1, 32, 32), "at least 2 samples"),
    ],
)
def test_bad_samples_are_refused(images, message):
    with pytest.raises(ValueError, match=message):
        evaluate_samples(images)


# ------------------------------------------------------------------------------------------ 2D points


def test_sliced_wasserstein_is_near_0_for_one_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 2, generator=g), torch.randn(4000, 2, generator=g)
    same = sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(1))
    shifted = sliced_wasserstein(a, b + torch.tensor([3.0, 0.0]), generator=torch.Generator().manual_seed(1))
    assert same < 0.1
    assert shifted == pytest.approx(3 / math.sqrt(2), rel=0.05)  # E[(d . u)^2] = |d|^2 / 2 in 2D
    assert sliced_wasserstein(a, a[:1000] + 1, n_projections=64) > 0.5  # unequal sizes
    line = torch.linspace(0, 1, 101, dtype=torch.float64)[:, None]
    assert sliced_wasserstein(line, line + 0.5) == pytest.approx(0.5, rel=1e-9)  # 1D: exactly W2
    with pytest.raises(ValueError, match="point sets"):
        sliced_wasserstein(a, torch.zeros(3, 3))


def test_evaluate_points_compares_with_held_out_toy_points():
    train = load_dataset("moons", split="train", n=1000).tensor
    good = evaluate_points(train, "moons")
    assert set(good) == {"sliced_wasserstein", "sw_real_floor", "nn_distance", "nn_real_floor", "n"}
    assert good["n"] == 1000 and good["nn_distance"] < 1.5 * good["nn_real_floor"]
    assert good["sliced_wasserstein"] < 3 * good["sw_real_floor"] < 0.15
    assert evaluate_points(train + torch.tensor([0.5, 0.0]), "moons")["sliced_wasserstein"] > 0.3
    assert evaluate_points(train, "moons") == good  # seeded
    with pytest.raises(ValueError, match="not a 2D toy dataset"):
        evaluate_points(train, "mnist5k")


def test_nearest_neighbour_distance_sees_a_spiral_filled_in():
    """Points with the spiral's own radii but random angles (a disk): sliced W2 hardly tells them from the spiral,
    the nearest-neighbour distance does."""
    spiral = load_dataset("spiral", split="train", n=2000).tensor.double()
    generator = torch.Generator().manual_seed(3)
    radius = spiral.norm(dim=1)[torch.randperm(2000, generator=generator)]
    angle = 2 * math.pi * torch.rand(2000, generator=generator, dtype=torch.float64)
    disk = radius[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
    real, filled = evaluate_points(spiral, "spiral"), evaluate_points(disk, "spiral")
    assert filled["nn_distance"] > 4 * real["nn_distance"]
    assert filled["sliced_wasserstein"] < 3 * real["sliced_wasserstein"]  # the blind spot the second metric covers
    assert nearest_neighbour_distance(spiral, spiral) == 0.0


# ------------------------------------------------------------------------------------------ the command line


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "ckpt"
    argv = ["train", "--preset", "tiny", "--steps", "5", "--batch-size", "8", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_evaluate_prints_the_metrics_as_json(tiny_checkpoint, capsys):
    capsys.readouterr()
    argv = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--n", "12", "--steps", "3", "--batch-size", "5"]
    assert main([*argv, "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    for key in ("fd", "fd_real_floor", "precision", "precision_real_floor", "recall", "recall_real_floor"):
        assert key in report
    for key in ("confident_fraction", "class_entropy", "class_histogram", "n", "reading", "split"):
        assert key in report
    assert report["n"] == 12 and sum(report["class_histogram"]) == 12 and report["steps"] == 3
    assert (report["sampler"], report["spacing"]) == ("dpmpp_2m_sde", "trailing")  # what the checkpoint records
    assert report["network_calls"] == 3
    assert report["fd"] > report["fd_real_floor"] > 0 and report["sampling_seconds"] > 0
    assert report["split"] == "report" and report["confident_fraction"] < 0.5  # 5 training steps: no digits yet
    assert report["reading"] in (
        "mostly noise: no digits yet",
        "blank, faint or blurry pictures: no readable digits yet",
    )
    assert err.strip().endswith(report["reading"]) and "FD " in err  # the plain line for people, on stderr
    assert main([*argv, "--device", "cpu", "--split", "tune"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "tune"


def test_evaluate_a_toy_points_model(tmp_path, capsys):
    out = tmp_path / "moons"
    argv = ["train", "--dataset", "moons", "--preset", "tiny", "--steps", "5", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--n", "64", "--steps", "4", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 64 and report["sliced_wasserstein"] > report["sw_real_floor"] > 0
    assert report["kind"] == "points" and report["reading"] == "mostly noise: points scattered away from the shape"


def test_evaluate_refuses_a_model_of_other_images(tiny_checkpoint, tmp_path, capsys):
    other = tmp_path / "fashion"
    shutil.copytree(tiny_checkpoint, other)
    config = json.loads((other / "config.json").read_text())
    config["dataset"]["name"] = "fashion_mnist"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", str(other), "--n", "4", "--device", "cpu"])
    assert "trained on 'fashion_mnist'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "1"], "at least 2"),
        (["--n", "5000"], "at most 1024"),
        (["--steps", "5000"], "at most 1000"),
        (["--sampler", "plms"], "invalid choice: 'plms'"),
        (["--checkpoint", "nowhere"], "no config.json"),
    ],
)
def test_evaluate_bad_arguments_exit_with_a_message(argv, message, tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_has_metric_says_which_data_sets_can_be_scored():
    from core.metrics import has_metric, score_samples

    assert has_metric("mnist5k") and has_metric("moons")
    assert not has_metric("cifar10") and not has_metric("no such data set")
    with pytest.raises(ValueError, match="unknown dataset 'no such data set'"):
        score_samples(torch.zeros(4, 1, 28, 28), "no such data set")
