"""Which speed options training uses on this device: bf16 autocast, channels_last and torch.compile, each only where
benchmarks/gpu_check.py measured it faster on this very device.

gpu_check times training steps of the Train tab's default model with each option added in turn (`decide`: bf16
autocast over float32, then channels_last over the better of those, then torch.compile over that; an option is
kept only when it is at least MARGIN faster) and records the verdict and the images/s behind it in
assets/speed_choices.json, keyed by the device (`device_key`: "cuda: NVIDIA H200"). `speed_choices(device,
precision)` reads that record. A device without one gets the conservative choice, what training did before any
measurement: bf16 autocast where the hardware runs it natively (core.device.uses_bf16), no channels_last, no
compile. The precision setting still rules bf16 ("fp32" never autocasts, "bf16" always does), and torch.compile is
never used on ZeroGPU, which does not support it ($SPACES_ZERO_GPU, set by Hugging Face).

    speed = speed_choices(device, "auto")
    model = speed.prepare(model)            # channels_last weights, if chosen (in place)
    network = speed.network(model)          # torch.compile'd, if chosen; the module itself otherwise
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=speed.bf16): ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from core.device import cpu_model, uses_bf16

SPEED_CHOICES_PATH = Path(__file__).resolve().parent.parent / "assets" / "speed_choices.json"
MARGIN = 1.05  # an option is kept when it trains at least 5% more images/s (less is within run-to-run noise)
ZERO_GPU_ENV = "SPACES_ZERO_GPU"  # Hugging Face sets it to "true" on ZeroGPU hardware


@dataclass(frozen=True)
class SpeedChoices:
    """The speed options of one device: bf16 autocast, channels_last memory format, torch.compile."""

    bf16: bool
    channels_last: bool = False
    compile: bool = False
    source: str = "the defaults (no measurement for this device)"  # or "measured by benchmarks/gpu_check.py ..."

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model with channels_last weights if chosen (converted in place; the module itself is returned)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def network(self, module: nn.Module) -> nn.Module | Callable:
        """What the training loss calls: torch.compile(module) if chosen, else the module itself."""
        return torch.compile(module) if self.compile else module

    def describe(self) -> str:
        """e.g. "bf16 autocast, channels_last (measured by benchmarks/gpu_check.py on 2026-12-03)"."""
        options = [name for name, on in self.options().items() if on] or ["float32"]
        return f"{', '.join(options)} ({self.source})"

    def options(self) -> dict[str, bool]:
        return {"bf16 autocast": self.bf16, "channels_last": self.channels_last, "torch.compile": self.compile}


def device_key(device: torch.device) -> str:
    """The name a device's record is kept under: "cuda: <GPU name>", "mps" or "cpu: <CPU model>"."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu: {cpu_model()}"
    return device.type


def load_records(path: Path | None = None) -> dict[str, dict]:
    """Every device's record ({} when the file is missing or unreadable: the defaults then hold everywhere).
    `path`: SPEED_CHOICES_PATH by default."""
    try:
        records = json.loads((path or SPEED_CHOICES_PATH).read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def speed_choices(device: torch.device, precision: str = "auto", path: Path | None = None) -> SpeedChoices:
    """The options training uses on `device` (see the module docstring)."""
    default = SpeedChoices(bf16=uses_bf16(precision, device))
    record = load_records(path).get(device_key(device))
    if not isinstance(record, dict) or (precision == "fp32" and record.get("bf16")):
        # a verdict measured with bf16 says nothing about float32: float32 keeps the defaults
        return default
    return SpeedChoices(
        bf16=uses_bf16(precision, device) if precision != "auto" else bool(record.get("bf16")),
        channels_last=bool(record.get("channels_last")),
        compile=bool(record.get("compile")) and os.environ.get(ZERO_GPU_ENV, "").lower() not in ("1", "t", "true"),
        source=f"measured by benchmarks/gpu_check.py on {record.get('date', 'an unrecorded date')}",
    )


def decide(measure: Callable[[SpeedChoices], float], *, allow_compile: bool = True) -> tuple[SpeedChoices, dict]:
    """Choose the options from measurements: `measure(choices)` returns the images/s of training with them. bf16
    over float32, then channels_last, then torch.compile, each over the best so far and kept when at least MARGIN
    faster. Returns (the choice, {label: images/s} of every configuration measured)."""
    rates: dict[str, float] = {}

    def label(choices: SpeedChoices) -> str:
        return "+".join(name for name, on in choices.options().items() if on) or "float32"

    best = SpeedChoices(bf16=False, source="measured")
    rates[label(best)] = best_rate = measure(best)
    for option in ("bf16", "channels_last", "compile"):
        if option == "compile" and not allow_compile:
            continue
        candidate = replace(best, **{option: True})
        rates[label(candidate)] = rate = measure(candidate)
        if rate >= MARGIN * best_rate:
            best, best_rate = candidate, rate
    return best, rates


def record_choice(key: str, choice: SpeedChoices, rates: dict, date: str, path: Path | None = None) -> None:
    """Write (or replace) the record of device `key`, keeping the other devices' records; atomically."""
    path = path or SPEED_CHOICES_PATH
    records = load_records(path)
    records[key] = {
        "bf16": choice.bf16,
        "channels_last": choice.channels_last,
        "compile": choice.compile,
        "date": date,
        "images_per_second": {name: round(rate, 1) for name, rate in rates.items()},
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)
