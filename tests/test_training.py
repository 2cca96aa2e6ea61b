"""The training loop: it learns, it is reproducible, it resumes exactly, it stops on a non-finite loss."""

from dataclasses import replace

import pytest
import torch

from core.checkpoint import load_checkpoint, read_config
from core.data import ImageDataset, load_dataset
from core.device import native_bf16, pick_device, uses_bf16
from core.schedules import make_schedule
from core.training import TrainConfig, Trainer, TrainingDiverged, lr_at


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k", split="train", image_size=32).subset(256)


def quick_config(**overrides):
    return TrainConfig(**{"steps": 20, "batch_size": 16, "warmup_steps": 5, "device": "cpu", **overrides})


def test_200_steps_of_tiny_lower_the_loss_by_30_percent(digits):
    records = list(Trainer(quick_config(steps=200, batch_size=32), dataset=digits).run())
    assert len(records) == 200 and [r.step for r in records] == list(range(1, 201))
    first, last = sum(r.loss for r in records[:10]) / 10, sum(r.loss for r in records[-20:]) / 20
    assert last < 0.7 * first, (first, last)
    final = records[-1]
    assert final.images_per_second > 0 and final.device == "cpu" and final.eta_seconds == pytest.approx(0, abs=1)
    assert len(final.bucket_losses) == 10 and all(b is not None for b in final.bucket_losses)
    # the default objective predicts x0: hardest near pure noise, so the last timestep bucket is the largest
    assert final.bucket_losses[-1] == max(final.bucket_losses)


def test_same_seed_same_losses_and_other_seed_differs(digits):
    a = [r.loss for r in Trainer(quick_config(seed=1), dataset=digits).run()]
    b = [r.loss for r in Trainer(quick_config(seed=1), dataset=digits).run()]
    c = [r.loss for r in Trainer(quick_config(seed=2), dataset=digits).run()]
    assert a == b
    assert a != c


@pytest.mark.parametrize("class_conditional", [False, True])
def test_resume_reproduces_the_uninterrupted_run(digits, tmp_path, class_conditional):
    config = quick_config(steps=12, class_conditional=class_conditional, ema_decay=0.9)
    uninterrupted = [r.loss for r in Trainer(config, dataset=digits).run()]
    first = Trainer(config, dataset=digits)
    k = 7
    for record in first.run():
        if record.step == k:
            break
    first.save(tmp_path / "ckpt")
    resumed = Trainer(config, dataset=digits, resume_from=tmp_path / "ckpt")
    assert resumed.step == k
    rest = [r.loss for r in resumed.run()]
    assert rest == uninterrupted[k:]
    assert torch.equal(next(resumed.ema_model.parameters()), next(resumed.ema_model.parameters()))


def test_resume_refuses_a_different_model(digits, tmp_path):
    trainer = Trainer(quick_config(steps=2), dataset=digits)
    list(trainer.run())
    trainer.save(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="does not match"):
        Trainer(quick_config(preset="small"), dataset=digits, resume_from=tmp_path / "ckpt")


def test_non_finite_loss_stops_with_a_message_and_keeps_finite_weights(digits):
    own = ImageDataset(digits.name, digits.images.clone(), digits.labels, digits.num_classes)
    trainer = Trainer(quick_config(steps=50), dataset=own)
    run = trainer.run()
    for _ in range(3):
        next(run)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_tensor[:] = float("nan")  # a corrupted batch from now on
    with pytest.raises(TrainingDiverged, match=r"stopped at step 4: the loss became nan.*step 3 are kept"):
        next(run)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.step == 3


@pytest.mark.parametrize(
    ("schedule", "objective"), [("linear", "v"), ("cosine", "x0"), ("scaled_linear", "x0"), ("sigmoid", "v")]
)
def test_the_schedule_and_its_parameters_round_trip_through_the_checkpoint(digits, tmp_path, schedule, objective):
    """Every schedule control reaches training, is recorded in config.json, and load_checkpoint rebuilds exactly
    that schedule (the same float64 betas as make_schedule with those parameters)."""
    params = dict(num_timesteps=37, beta_start=3e-4, beta_end=0.05, cosine_s=0.02, zero_terminal_snr=True)
    config = quick_config(
        steps=2, schedule=schedule, objective=objective, weighting="min_snr", min_snr_gamma=2.5, p_uncond=0.3, **params
    )
    trainer = Trainer(config, dataset=digits)
    list(trainer.run())
    trainer.save(tmp_path / "ckpt")
    expected = make_schedule(schedule, **params)
    assert read_config(tmp_path / "ckpt")["schedule"] == {"name": schedule, **params}
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(loaded.schedule.betas, expected.betas) and loaded.schedule.has_zero_terminal_snr
    assert torch.equal(trainer.schedule.betas, expected.betas)
    training = read_config(tmp_path / "ckpt")["training"]
    assert (training["min_snr_gamma"], training["p_uncond"], training["weighting"]) == (2.5, 0.3, "min_snr")
    # the run records "when the dataset has labels" resolved: the digits have them
    assert config.class_conditional is None and training["class_conditional"] is True
    assert TrainConfig.from_dict(training) == replace(config, class_conditional=True) == trainer.config


def test_min_snr_gamma_reaches_the_loss(digits):
    losses = {
        gamma: [
            r.loss
            for r in Trainer(quick_config(steps=2, weighting="min_snr", min_snr_gamma=gamma), dataset=digits).run()
        ]
        for gamma in (1.0, 5.0)
    }
    assert losses[1.0] != losses[5.0]


def test_eps_with_zero_terminal_snr_is_refused_before_any_data_loads(monkeypatch):
    def no_data(config):
        raise AssertionError("data loaded before the refusal")

    monkeypatch.setattr("core.training.load_training_data", no_data)
    with pytest.raises(ValueError, match=r"alpha-bar is 0.*divides by zero.*choose objective x0 or v"):
        Trainer(quick_config(objective="eps", zero_terminal_snr=True))


def test_class_conditional_needs_labels():
    unlabeled = ImageDataset("blank", torch.zeros(8, 1, 32, 32))
    with pytest.raises(ValueError, match="has no labels"):
        Trainer(quick_config(class_conditional=True), dataset=unlabeled)


def test_time_budget_stops_the_run(digits):
    records = list(Trainer(quick_config(steps=None, time_budget=1.0), dataset=digits).run())
    assert records and records[-1].elapsed < 3.0


def test_learning_rate_schedule_warms_up_then_decays():
    config = TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(config, 0, 0.0) == pytest.approx(1e-4)
    assert lr_at(config, 9, 0.01) == pytest.approx(1e-3)
    assert lr_at(config, 500, 0.5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(config, 1000, 1.0) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(lr=-1.0), "lr must be in"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(steps=None, time_budget=None), "give steps, time_budget or both"),
        (dict(objective="score"), "unknown objective"),
        (dict(schedule="quadratic"), "unknown schedule"),
        (dict(preset="huge"), "unknown preset"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(precision="fp16"), "unknown precision"),
        (dict(num_timesteps=1), "num_timesteps must be an integer >= 2"),
        (dict(schedule="linear", beta_start=0.03, beta_end=0.02), "beta_start .* must be smaller than beta_end"),
        (dict(schedule="linear", beta_end=1.5), r"beta_end must be in \(0, 1\)"),
        (dict(cosine_s=0.0), r"cosine_s must be in \(0, 1\)"),
        (dict(min_snr_gamma=0.0), "min_snr_gamma must be a positive number"),
        (dict(weighting="min_snr", min_snr_gamma=float("nan")), "min_snr_gamma must be a positive number"),
        (dict(objective="eps", zero_terminal_snr=True), "eps prediction cannot be trained with zero terminal SNR"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides).validate()


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda")


def test_precision_choice():
    cpu = torch.device("cpu")
    assert not uses_bf16("fp32", cpu) and uses_bf16("bf16", cpu)
    assert uses_bf16("auto", cpu) == native_bf16(cpu)
    assert not uses_bf16("bf16", torch.device("meta"))  # autocast only on cpu and cuda


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_training_in_either_precision_lowers_the_loss_and_keeps_float32_weights(digits, precision):
    trainer = Trainer(quick_config(steps=60, batch_size=32, precision=precision), dataset=digits)
    records = list(trainer.run())
    first, last = sum(r.loss for r in records[:5]) / 5, sum(r.loss for r in records[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    assert trainer.bf16 == (precision == "bf16")
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_default_image_size_is_the_datasets_own():
    trainer = Trainer(quick_config(steps=1))
    assert tuple(trainer.train_tensor.shape[1:]) == (1, 28, 28)
