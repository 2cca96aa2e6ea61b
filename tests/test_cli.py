"""The command line end to end: train a few steps, sample a grid and an array; clear errors for bad arguments."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import load_checkpoint
from core.classic_samplers import DDIMSampler, DDPMSampler
from core.cli import build_parser, main, plan_sampling
from core.samplers import SamplingDefaults
from core.schedules import make_schedule


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ckpt"
    status = main(
        [
            "train",
            "--dataset",
            "mnist5k",
            "--preset",
            "tiny",
            "--steps",
            "20",
            "--batch-size",
            "16",
            "--seed",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    return out


@pytest.fixture(scope="module")
def unconditional(tmp_path_factory):
    """Two steps of the same run without labels (--no-class-conditional) and with logit-normal timesteps."""
    out = tmp_path_factory.mktemp("run") / "unconditional"
    flags = ["--steps", "2", "--batch-size", "8", "--device", "cpu", "--no-class-conditional"]
    assert main(["train", *flags, "--timestep-sampling", "logit_normal", "--out", str(out)]) == 0
    return out


def test_the_default_run_on_digits_trains_with_labels(trained, unconditional):
    """The recipe's defaults: a dataset with labels trains class-conditional, with uniform timesteps; labels can be
    turned off and the timesteps drawn logit-normal, and the checkpoint records what ran."""
    default, off = (load_checkpoint(folder).config for folder in (trained, unconditional))
    assert default["class_conditional"] is True and default["training"]["class_conditional"] is True
    assert default["training"]["timestep_sampling"] == "uniform"
    assert off["class_conditional"] is False and off["training"]["timestep_sampling"] == "logit_normal"
    assert load_checkpoint(trained).sampling_model.num_classes == 10
    assert not getattr(load_checkpoint(unconditional).sampling_model, "num_classes", None)


def test_sample_draws_each_class_in_turn_from_a_conditional_model(trained, tmp_path):
    """Without --label a class-conditional checkpoint draws 0, 1, 2, ... in turn (the labels go into the .npz);
    with --label, only that class."""
    each, three = tmp_path / "each.npz", tmp_path / "three.npz"
    assert main(["sample", "--checkpoint", str(trained), "--n", "12", "--steps", "2", "--out", str(each)]) == 0
    assert (
        main(["sample", "--checkpoint", str(trained), "--n", "4", "--steps", "2", "--label", "3", "--out", str(three)])
        == 0
    )
    assert np.load(each)["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert np.load(three)["labels"].tolist() == [3, 3, 3, 3]


def test_train_writes_a_checkpoint(trained):
    checkpoint = load_checkpoint(trained)
    assert checkpoint.step == 20 and checkpoint.ema_model is not None
    assert checkpoint.config["dataset"]["name"] == "mnist5k"
    assert checkpoint.config["training"]["seed"] == 3


def test_sample_png_grid_through_python_dash_m(trained, tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "sample",
            "--checkpoint",
            str(trained),
            "--n",
            "4",
            "--steps",
            "5",
            "--seed",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        # 2x2 grid of the digits' own 28x28 (the training default) with 2-pixel gaps and border
        assert image.size == (2 * 30 + 2, 2 * 30 + 2) and image.mode == "L"


def test_sample_npz_is_reproducible_per_seed(trained, tmp_path):
    paths = [tmp_path / f"{i}.npz" for i in range(3)]
    for path, seed in zip(paths, [0, 0, 1], strict=True):
        assert (
            main(
                [
                    "sample",
                    "--checkpoint",
                    str(trained),
                    "--n",
                    "4",
                    "--sampler",
                    "ddpm",
                    "--steps",
                    "10",
                    "--seed",
                    str(seed),
                    "--device",
                    "cpu",
                    "--out",
                    str(path),
                ]
            )
            == 0
        )
    a, b, c = (np.load(p)["images"] for p in paths)
    assert a.shape == (4, 28, 28, 1) and a.dtype == np.uint8  # the digits' own size
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_train_records_the_objectives_sampling_defaults(trained):
    """The defaults: DPM-Solver++(2M) SDE, 10 steps, trailing (benchmarks/RESULTS.md "Sampler quality")."""
    config = json.loads((trained / "config.json").read_text())
    assert config["sampling_defaults"] == {"sampler": "dpmpp_2m_sde", "steps": 10, "eta": 0.0, "spacing": "trailing"}


def test_train_records_the_sampling_defaults_it_is_given(tmp_path):
    out = tmp_path / "toy"
    argv = ["train", "--dataset", "moons", "--objective", "eps", "--steps", "2", "--device", "cpu", "--out", str(out)]
    assert main([*argv, "--sample-sampler", "ddpm", "--sample-eta", "0.5"]) == 0
    assert load_checkpoint(out).sampling_defaults == SamplingDefaults("ddpm", 1000, 0.5)  # DDPM's own: every t
    assert main([*argv, "--sample-steps", "20"]) == 0
    assert load_checkpoint(out).sampling_defaults == SamplingDefaults("dpmpp_2m_sde", 20, 0.0, "trailing")
    assert main([*argv, "--sample-sampler", "ddim", "--sample-eta", "1", "--sample-spacing", "leading"]) == 0
    assert load_checkpoint(out).sampling_defaults == SamplingDefaults("ddim", 50, 1.0, "leading")  # DDIM's own 50


def test_every_schedule_flag_reaches_the_checkpoint(tmp_path):
    out = tmp_path / "ztsnr"
    flags = ["--schedule", "linear", "--num-timesteps", "40", "--beta-start", "2e-4", "--beta-end", "0.04"]
    flags += ["--cosine-s", "0.01", "--zero-terminal-snr", "--objective", "v", "--weighting", "min_snr"]
    flags += ["--min-snr-gamma", "3", "--class-conditional", "--p-uncond", "0.25"]
    argv = ["train", "--dataset", "moons", "--steps", "2", "--device", "cpu", *flags, "--out", str(out)]
    assert main(argv) == 0
    checkpoint = load_checkpoint(out)
    params = dict(num_timesteps=40, beta_start=2e-4, beta_end=0.04, cosine_s=0.01, zero_terminal_snr=True)
    assert checkpoint.config["schedule"] == {"name": "linear", **params}
    assert torch.equal(checkpoint.schedule.betas, make_schedule("linear", **params).betas)
    training = checkpoint.config["training"]
    assert (training["min_snr_gamma"], training["p_uncond"], training["weighting"]) == (3.0, 0.25, "min_snr")
    assert checkpoint.sampling_defaults.network_calls == 10  # the default 10 steps fit T = 40


def plan(argv):
    parser = build_parser()
    return plan_sampling(parser.parse_args(["sample", *argv, "--out", "x.png"]), parser)


def test_sample_uses_the_checkpoints_defaults_unless_told_otherwise(trained, tmp_path, capsys):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["sampling_defaults"] = {"sampler": "ddim", "steps": 7, "eta": 0.25}
    (checkpoint / "config.json").write_text(json.dumps(config))
    recorded = plan(["--checkpoint", str(checkpoint)])
    assert recorded.settings == SamplingDefaults("ddim", 7, 0.25, "leading") and recorded.steps == 7
    assert isinstance(recorded.sampler, DDIMSampler) and recorded.sampler.eta == 0.25
    assert plan(["--checkpoint", str(checkpoint), "--eta", "0", "--steps", "3"]).settings == SamplingDefaults(
        "ddim", 3, 0.0, "leading"
    )
    ddpm = plan(["--checkpoint", str(checkpoint), "--sampler", "ddpm"])  # another sampler: its own step count
    assert isinstance(ddpm.sampler, DDPMSampler) and ddpm.steps == 1000
    out = tmp_path / "grid.png"
    argv = ["sample", "--checkpoint", str(checkpoint), "--n", "2", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    assert "(ddim, 7 steps, eta 0.25," in capsys.readouterr().err


def test_sample_help_says_the_defaults_come_from_the_checkpoint(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--sampler, --steps and --eta default to the settings the checkpoint records" in help_text


def test_resume_continues_the_step_count(trained, tmp_path):
    out = tmp_path / "more"
    assert (
        main(
            [
                "train",
                "--steps",
                "25",
                "--batch-size",
                "16",
                "--seed",
                "3",
                "--device",
                "cpu",
                "--resume",
                str(trained),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert load_checkpoint(out).step == 25


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--steps", "0", "--out", "x"], "expected a positive integer, got 0"),
        (["train", "--lr", "-1", "--out", "x"], "expected a positive finite number"),
        (["train", "--schedule", "quadratic", "--out", "x"], "invalid choice: 'quadratic'"),
        (
            ["train", "--objective", "eps", "--zero-terminal-snr", "--out", "x"],
            "eps prediction cannot be trained with zero terminal SNR: at t = T-1 alpha-bar is 0",
        ),
        (["train", "--num-timesteps", "1", "--out", "x"], "num_timesteps must be an integer >= 2, got 1"),
        (["train", "--num-timesteps", "0", "--out", "x"], "expected a positive integer, got 0"),
        (["train", "--schedule", "linear", "--beta-end", "1.5", "--out", "x"], "beta_end must be in (0, 1), got 1.5"),
        (["train", "--cosine-s", "2", "--out", "x"], "cosine_s must be in (0, 1)"),
        (["train", "--min-snr-gamma", "0", "--out", "x"], "expected a positive finite number, got 0.0"),
        (["train", "--p-uncond", "1.5", "--out", "x"], "p_uncond must be in [0, 1], got 1.5"),
        (["sample", "--checkpoint", "nowhere", "--out", "x.png"], "no config.json"),
        (["sample", "--checkpoint", "CKPT", "--out", "x.gif"], "must end in .png or .npz"),
        (["sample", "--checkpoint", "UNCOND", "--label", "3", "--out", "x.png"], "needs a class-conditional"),
        (["sample", "--checkpoint", "CKPT", "--label", "10", "--out", "x.png"], "--label must be in 0..9"),
        (["train", "--timestep-sampling", "cubic", "--out", "x"], "invalid choice: 'cubic'"),
        (["sample", "--checkpoint", "CKPT", "--steps", "5000", "--out", "x.png"], "at most 1000"),
        (["sample", "--checkpoint", "CKPT", "--eta", "2", "--out", "x.png"], "eta must be in [0, 1]"),
        (["sample", "--checkpoint", "CKPT", "--n", "5000", "--out", "x.png"], "--n must be at most 1024"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, trained, unconditional, capsys, tmp_path):
    argv = [{"CKPT": str(trained), "UNCOND": str(unconditional)}.get(a, a) for a in argv]
    argv = [str(tmp_path / a) if a.startswith("x.") else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_runs_the_same_cli():
    result = subprocess.run(["ddpm", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "train" in result.stdout and "sample" in result.stdout


@pytest.mark.parametrize(
    ("sampler", "spacing", "steps", "calls"),
    [("heun", "karras", 3, 5), ("dpmpp_2m", "karras", 4, 4), ("euler_ancestral", "trailing", 3, 3)],
)
def test_sample_with_the_new_samplers(trained, tmp_path, capsys, sampler, spacing, steps, calls):
    out = tmp_path / "grid.npz"
    argv = ["sample", "--checkpoint", str(trained), "--n", "3", "--device", "cpu", "--out", str(out)]
    assert main([*argv, "--sampler", sampler, "--spacing", spacing, "--steps", str(steps)]) == 0
    assert np.load(out)["images"].shape[0] == 3
    calls_note = f" ({calls} network calls)" if calls != steps else ""
    assert f"({sampler}, {steps} steps{calls_note}, {spacing}," in capsys.readouterr().err


def test_samplers_that_cannot_run_a_model_are_refused_before_sampling(tmp_path, capsys):
    out = tmp_path / "zero_snr"
    common = ["--steps", "2", "--batch-size", "4", "--device", "cpu"]
    assert main(["train", *common, "--zero-terminal-snr", "--objective", "v", "--out", str(out)]) == 0
    for extra, message in [
        (["--spacing", "karras"], "Karras sigmas need a finite sigma_max"),
        (["--sampler", "euler", "--spacing", "trailing"], "euler integrates x / sqrt(alpha-bar)"),
    ]:
        argv = ["sample", "--checkpoint", str(out), "--n", "1", "--out", str(tmp_path / "x.png"), *extra]
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "--checkpoint", str(out), "--spacing", "uniform", "--out", str(tmp_path / "x.png")])
    assert "invalid choice: 'uniform'" in capsys.readouterr().err
    # DPM-Solver++ starts from pure noise at zero terminal SNR: alpha = 0 makes its first step DDIM's
    assert main(["sample", "--checkpoint", str(out), "--n", "1", "--sampler", "dpmpp_2m", "--spacing", "trailing",
                 "--steps", "3", "--out", str(tmp_path / "ok.png")]) == 0  # fmt: skip
