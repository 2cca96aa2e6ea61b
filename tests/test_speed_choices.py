"""Speed options per device (core/accelerators.py): the defaults without a measurement, a measured record read back,
the rule that decides from measurements, and a Trainer that follows the record."""

import json

import pytest
import torch

import core.accelerators as accelerators
from core.accelerators import SpeedChoices, decide, device_key, load_records, record_choice, speed_choices
from core.data import load_dataset
from core.device import describe_device, pick_device, uses_bf16
from core.training import TrainConfig, Trainer

CPU = torch.device("cpu")


@pytest.fixture
def records(tmp_path, monkeypatch):
    """An empty record file in place of assets/speed_choices.json."""
    path = tmp_path / "speed_choices.json"
    monkeypatch.setattr(accelerators, "SPEED_CHOICES_PATH", path)
    return path


def test_a_device_without_a_record_keeps_the_conservative_defaults(records):
    for precision in ("auto", "bf16", "fp32"):
        choice = speed_choices(CPU, precision)
        assert choice.bf16 == uses_bf16(precision, CPU)
        assert not choice.channels_last and not choice.compile
        assert "no measurement" in choice.source
    records.write_text("{not json")  # an unreadable file is no record
    assert load_records() == {} and not speed_choices(CPU).channels_last


def test_a_measured_record_is_read_for_its_own_device_only(records, monkeypatch):
    record_choice("cuda: Some Other GPU", SpeedChoices(bf16=True, compile=True), {"float32": 1.0}, "2026-01-01")
    assert speed_choices(CPU) == speed_choices(CPU, path=records.parent / "missing.json")  # not this device's
    choice = SpeedChoices(bf16=False, channels_last=True, compile=True)
    record_choice(device_key(CPU), choice, {"float32": 100.0, "channels_last": 120.0}, "2026-12-03")
    assert set(json.loads(records.read_text())) == {"cuda: Some Other GPU", device_key(CPU)}  # both kept
    read = speed_choices(CPU, "auto")
    assert (read.bf16, read.channels_last, read.compile) == (False, True, True)
    assert "measured by benchmarks/gpu_check.py on 2026-12-03" in read.source
    assert speed_choices(CPU, "bf16").bf16  # the precision setting still rules bf16
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # ZeroGPU does not support torch.compile
    assert not speed_choices(CPU).compile and speed_choices(CPU).channels_last


def test_fp32_ignores_a_verdict_measured_with_bf16(records):
    record_choice(device_key(CPU), SpeedChoices(bf16=True, channels_last=True), {}, "2026-12-03")
    assert speed_choices(CPU, "fp32") == SpeedChoices(bf16=False)
    assert speed_choices(CPU, "auto").channels_last


def test_each_option_is_kept_only_when_measured_at_least_five_percent_faster():
    rates = {
        (False, False, False): 100.0,
        (True, False, False): 150.0,  # bf16: kept
        (True, True, False): 155.0,  # channels_last: +3%, not kept
        (True, False, True): 240.0,  # compile over bf16: kept
    }
    asked = []

    def measure(choice):
        asked.append(choice)
        return rates[(choice.bf16, choice.channels_last, choice.compile)]

    choice, measured = decide(measure)
    assert (choice.bf16, choice.channels_last, choice.compile) == (True, False, True)
    assert measured == {"float32": 100.0, "bf16 autocast": 150.0, "bf16 autocast+channels_last": 155.0,
                        "bf16 autocast+torch.compile": 240.0}  # fmt: skip
    choice, measured = decide(measure, allow_compile=False)
    assert not choice.compile and len(measured) == 3
    slower = decide(lambda c: 100.0 - 10 * (c.bf16 + c.channels_last + c.compile))[0]
    assert slower.options() == SpeedChoices(bf16=False).options()  # nothing faster: plain float32


def test_compile_wraps_without_compiling_until_called():
    net = torch.nn.Linear(2, 2)
    assert SpeedChoices(bf16=False).network(net) is net
    compiled = SpeedChoices(bf16=False, compile=True).network(net)
    assert compiled is not net and compiled._orig_mod is net


def test_a_trainer_follows_the_record_and_channels_last_trains_the_same(records):
    digits = load_dataset("mnist5k", split="train", image_size=32).subset(64)
    config = dict(steps=3, batch_size=8, warmup_steps=1, device="cpu", precision="fp32")
    plain = Trainer(TrainConfig(**config), dataset=digits)
    plain_losses = [r.loss for r in plain.run()]
    record_choice(device_key(CPU), SpeedChoices(bf16=False, channels_last=True), {}, "2026-12-03")
    fast = Trainer(TrainConfig(**config), dataset=digits)
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert fast.speed.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert [r.loss for r in fast.run()] == pytest.approx(plain_losses, rel=1e-4)


def test_the_device_is_described_in_one_line(monkeypatch):
    assert describe_device(CPU).startswith("cpu (") and "core" in describe_device(CPU)
    monkeypatch.setenv("DDPM_EXPLORER_DEVICE", "cpu")  # what "auto" means when set (the app on ZeroGPU)
    assert pick_device("auto") == CPU
