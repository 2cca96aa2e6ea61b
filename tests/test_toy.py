"""The 2D MLP denoiser (core/toy.py): the U-Net's signature, driven unchanged by the losses and samplers; it learns
a toy set in seconds; its checkpoints round-trip; the command line trains and samples it end to end."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from core.checkpoint import build_model, load_checkpoint
from core.cli import main
from core.data import load_dataset
from core.diffusion import training_loss
from core.point_metrics import sliced_wasserstein
from core.sampler_base import draw_noise
from core.samplers import denoise, make_sampler, sample
from core.schedules import make_schedule
from core.toy import TOY_PRESETS, ToyMLP, make_toy_mlp
from core.training import TrainConfig, Trainer
from core.unet import UNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# One CPU thread (see the one_torch_thread fixture in conftest.py).
FAST = {"device": "cpu", "num_threads": 1}


def test_forward_has_the_unet_signature_and_starts_at_zero():
    model = ToyMLP()
    x, t = torch.randn(5, 2), torch.randint(0, 1000, (5,))
    out = model(x, t)
    assert out.shape == (5, 2) and torch.all(out == 0)  # "predict zero" at initialisation
    assert model.num_classes is None
    assert model(x, torch.tensor(7)).shape == (5, 2)  # one t for the whole batch


def test_check_input_refuses_other_shapes_clearly():
    model = ToyMLP()
    with pytest.raises(ValueError, match=r"takes points \[B, 2\], got shape \(4, 1, 8, 8\) \(images need a U-Net"):
        model(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"takes points \[B, 2\], got shape \(4, 3\)"):
        model.check_input(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="not class-conditional"):
        model(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_class_conditional_labels_and_the_no_class_token():
    model = ToyMLP(num_classes=8)
    torch.nn.init.normal_(model.output.weight)  # so that labels change the output
    x, t = torch.randn(3, 2), torch.full((3,), 500)
    by_label = model(x, t, torch.tensor([0, 0, 0])), model(x, t, torch.tensor([1, 1, 1]))
    assert not torch.allclose(*by_label)
    assert torch.equal(model(x, t), model(x, t, torch.full((3,), 8)))  # y=None is the "no class" token
    with pytest.raises(ValueError, match=r"labels must be in 0..8"):
        model(x, t, torch.tensor([0, 9, 1]))


def test_config_rebuilds_the_model():
    model = make_toy_mlp("small", num_classes=2)
    config = model.config
    assert config["type"] == "mlp" and config["hidden"] == TOY_PRESETS["small"]["hidden"]
    assert config["extra"] == {"preset": "small"}
    rebuilt = build_model(config)  # through the checkpoint registry
    assert isinstance(rebuilt, ToyMLP) and rebuilt.config == config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="unknown MLP config keys"):
        ToyMLP.from_config({**config, "channels": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        make_toy_mlp("huge")


def test_losses_and_samplers_drive_it_unchanged():
    model, schedule = ToyMLP(), make_schedule("linear", 1000)
    x0 = load_dataset("moons", n=64).points
    result = training_loss(model, schedule, x0, objective="v", generator=torch.Generator().manual_seed(0))
    assert result.per_sample.shape == (64,) and torch.isfinite(result.loss)
    result.loss.backward()
    for name in ("ddpm", "ddim"):
        sampler = make_sampler(name, schedule, clip_x0=True)
        generator = torch.Generator().manual_seed(1)
        steps = list(
            denoise(model, sampler, draw_noise((16, 2), generator, "cpu", torch.float32), 10, generator=generator)
        )
        assert len(steps) == 10
        assert all(s.x_t.shape == s.pred_x0.shape == s.pred_eps.shape == (16, 2) for s in steps)


def test_the_trainer_picks_the_denoiser_by_dataset_kind():
    toy = Trainer(TrainConfig(dataset="moons", steps=1, preset="small", **FAST))
    assert isinstance(toy.model, ToyMLP) and toy.model.cfg.hidden == TOY_PRESETS["small"]["hidden"]
    assert toy.checkpoint_config()["dataset"] == {"kind": "points", "name": "moons", "dim": 2, "num_classes": 2}
    conditional = Trainer(TrainConfig(dataset="eight_gaussians", steps=1, class_conditional=True, **FAST))
    assert conditional.model.num_classes == 8
    with pytest.raises(ValueError, match="has no labels"):
        Trainer(TrainConfig(dataset="swiss_roll", steps=1, class_conditional=True, **FAST))
    digits = Trainer(TrainConfig(steps=1, **FAST), dataset=load_dataset().subset(8))
    assert isinstance(digits.model, UNet)


@pytest.fixture(scope="module")
def trained():
    """The tiny MLP after 400 steps on moons (about 5 s on one thread), without the moons' labels."""
    config = TrainConfig(
        dataset="moons",
        class_conditional=False,
        steps=400,
        batch_size=256,
        lr=3e-3,
        warmup_steps=20,
        seed=0,
        objective="eps",
        schedule="linear",
        **FAST,
    )
    trainer = Trainer(config)
    records = list(trainer.run())
    return trainer, records


def draw(model, schedule, sampler_name: str, n: int = 1000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x_T = draw_noise((n, 2), generator, "cpu", torch.float32)
    return sample(model, make_sampler(sampler_name, schedule, clip_x0=True), x_T, 50, generator=generator)


@pytest.mark.parametrize("sampler_name", ["ddim", "ddpm"])
def test_it_learns_moons_in_seconds(trained, sampler_name):
    trainer, records = trained
    assert records[-1].loss < 0.5 * records[0].loss
    fresh = load_dataset("moons", split="test", n=1000).points
    untrained = make_toy_mlp("tiny")
    torch.manual_seed(0)
    torch.nn.init.normal_(untrained.output.weight, std=0.1)  # a random network, not just "predict zero"
    distance = {}
    for name, model in (("trained", trainer.ema_model), ("untrained", untrained)):
        samples = draw(model, trainer.schedule, sampler_name)
        assert samples.shape == (1000, 2) and torch.isfinite(samples).all()
        distance[name] = sliced_wasserstein(samples, fresh, generator=torch.Generator().manual_seed(2))
    floor = sliced_wasserstein(
        load_dataset("moons", n=1000).points, fresh, generator=torch.Generator().manual_seed(2)
    )  # two draws of the real distribution
    assert distance["trained"] < 0.3 * distance["untrained"], distance
    assert distance["trained"] < 3.5 * floor, (distance, floor)  # about 2x the floor; 3-4x without the time input


def test_the_trained_network_uses_the_timestep(trained):
    trainer, _ = trained
    x = load_dataset("moons", split="test", n=256).points
    early, late = (trainer.ema_model(x, torch.full((256,), t)) for t in (20, 900))
    assert (early - late).abs().mean() > 0.1  # the noise to remove depends on how noisy x is said to be


def test_a_toy_checkpoint_round_trips_and_resumes(trained, tmp_path):
    trainer, _ = trained
    trainer.save(tmp_path / "ckpt")
    checkpoint = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(checkpoint.model, ToyMLP) and checkpoint.config["model"]["type"] == "mlp"
    assert checkpoint.config["dataset"]["kind"] == "points" and checkpoint.step == 400
    for key, value in trainer.ema_model.state_dict().items():
        assert torch.equal(checkpoint.sampling_model.state_dict()[key], value)
    assert torch.equal(
        draw(checkpoint.sampling_model, checkpoint.schedule, "ddim", n=50),
        draw(trainer.ema_model, trainer.schedule, "ddim", n=50),
    )
    longer = dataclasses.replace(trainer.config, steps=403)
    resumed = Trainer(longer, resume_from=tmp_path / "ckpt")
    assert resumed.step == 400 and len(list(resumed.run())) == 3


def test_command_line_trains_and_samples_a_toy_end_to_end(tmp_path, capsys):
    out = tmp_path / "moons"
    argv = ["train", "--dataset", "moons", "--steps", "50", "--num-threads", "1", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    assert "training mlp tiny" in capsys.readouterr().err
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    points_file = tmp_path / "pts.npz"
    result = subprocess.run(
        [sys.executable, "-m", "core", "sample", "--checkpoint", str(out), "--n", "100", "--out", str(points_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    with np.load(points_file) as saved:
        points = saved["points"]
    assert points.shape == (100, 2) and points.dtype == np.float32 and np.isfinite(points).all()
    assert np.abs(points).max() < 3
    scatter = tmp_path / "pts.png"
    assert main(["sample", "--checkpoint", str(out), "--n", "200", "--steps", "10", "--out", str(scatter)]) == 0
    with Image.open(scatter) as image:
        assert image.size == (512, 512)
        coloured = np.asarray(image.convert("RGB")).astype(int)
    assert ((coloured[..., 2] - coloured[..., 0]) > 100).sum() > 200  # blue dots on white


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "folder"], "needs data_path"),
        (["--dataset", "mnist5k", "--data-path", "x"], "data_path and channels are for dataset 'folder'"),
        (["--dataset", "pinwheel"], "invalid choice: 'pinwheel'"),
    ],
)
def test_command_line_dataset_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", *argv, "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "x")])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
