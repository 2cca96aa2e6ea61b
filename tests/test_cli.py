"""The command line end to end: train a few steps, sample a grid and an array; clear errors for bad arguments."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.checkpoint import load_checkpoint
from core.cli import main


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
        (["sample", "--checkpoint", "nowhere", "--out", "x.png"], "no config.json"),
        (["sample", "--checkpoint", "CKPT", "--out", "x.gif"], "must end in .png or .npz"),
        (["sample", "--checkpoint", "CKPT", "--label", "3", "--out", "x.png"], "needs a class-conditional"),
        (["sample", "--checkpoint", "CKPT", "--steps", "5000", "--out", "x.png"], "at most 1000"),
        (["sample", "--checkpoint", "CKPT", "--eta", "2", "--out", "x.png"], "eta must be in [0, 1]"),
        (["sample", "--checkpoint", "CKPT", "--n", "5000", "--out", "x.png"], "--n must be at most 1024"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, trained, capsys, tmp_path):
    argv = [str(trained) if a == "CKPT" else a for a in argv]
    argv = [str(tmp_path / a) if a.startswith("x.") else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_runs_the_same_cli():
    result = subprocess.run(["ddpm", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "train" in result.stdout and "sample" in result.stdout
