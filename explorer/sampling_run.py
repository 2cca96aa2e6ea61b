"""Sampling for the Sample tab: checked settings, the starting noise x_T from a seed, and runs that yield every
step of core.samplers.denoise into a `Trajectory`.

A run takes turns on the cores with every other heavy run: each network step runs through `compute` (the app's one
compute thread, explorer.compute_worker.ComputeWorker; by default the caller's own thread), and the run ends at the next
step when `stop()` says so. Compare mode runs two settings from the very same x_T (and the same
seed for any noise the samplers add along the way), so the difference between the two pictures is the sampler's
alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from core.samplers import SAMPLERS, Step, denoise, draw_noise, make_sampler
from explorer.models import ModelEntry
from explorer.trajectory import Trajectory

MAX_IMAGES = 64
MAX_POINTS = 2000
MAX_GUIDANCE = 10.0
MAX_SEED = 2**31 - 1
EACH_CLASS = -1  # label value meaning "each class in turn" (0, 1, 2, ...)
STEP_NOISE_OFFSET = 1  # the noise added during sampling uses seed + 1, x_T uses seed


@dataclass(frozen=True)
class SamplerSettings:
    """Which sampler, how many network calls, and DDIM's eta (0 deterministic, 1 as noisy as DDPM)."""

    sampler: str  # "ddpm" or "ddim"
    steps: int
    eta: float = 0.0

    @property
    def title(self) -> str:
        if self.sampler == "ddim":
            return f"DDIM, {self.steps} steps, eta {self.eta:g}"
        return f"DDPM, {self.steps} steps"


@dataclass(frozen=True)
class SampleRequest:
    settings: SamplerSettings
    seed: int
    count: int  # images, or points for a 2D model
    label: int | None  # a class, EACH_CLASS, or None (unconditional)
    guidance: float


def _number(name: str, value: object) -> float:
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _whole(name: str, value: object, low: int, high: int) -> int:
    number = _number(name, value)
    if not number.is_integer() or not low <= number <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(number)


def check_settings(entry: ModelEntry, sampler: str, steps: object, eta: object) -> SamplerSettings:
    """SamplerSettings for this model, or ValueError naming the bad value and the allowed range."""
    name = str(sampler).lower()
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(s.upper() for s in SAMPLERS)}, got {sampler!r}")
    num_timesteps = entry.checkpoint.schedule.num_timesteps
    steps = _whole("steps", steps, 1, num_timesteps)
    eta = _number("eta", eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be from 0 to 1, got {eta:g}")
    return SamplerSettings(name, steps, eta if name == "ddim" else 1.0)


def check_request(
    entry: ModelEntry,
    sampler: str,
    steps: object,
    eta: object,
    seed: object,
    count: object,
    label: object = None,
    guidance: object = 1.0,
) -> SampleRequest:
    """A SampleRequest, or ValueError for any value out of range (whether it came from the page or a script).
    label: None, a class 0..num_classes-1, or EACH_CLASS; ignored (None) for an unconditional model."""
    settings = check_settings(entry, sampler, steps, eta)
    seed = _whole("seed", seed, 0, MAX_SEED)
    most = MAX_POINTS if entry.is_points else MAX_IMAGES
    count = _whole("number of points" if entry.is_points else "number of images", count, 1, most)
    guidance = _number("guidance", guidance)
    if not 0.0 <= guidance <= MAX_GUIDANCE:
        raise ValueError(f"guidance must be from 0 to {MAX_GUIDANCE:g}, got {guidance:g}")
    if entry.num_classes is None or label is None:
        return SampleRequest(settings, seed, count, None, 1.0)
    label = _whole("class", label, EACH_CLASS, entry.num_classes - 1)
    return SampleRequest(settings, seed, count, label, guidance)


def starting_noise(entry: ModelEntry, count: int, seed: int) -> Tensor:
    """x_T: `count` draws of N(0, I) in the model's sample shape from `seed` (the same on any device)."""
    generator = torch.Generator().manual_seed(seed)
    return draw_noise((count, *entry.checkpoint.sample_shape), generator, entry.device, torch.float32)


def class_labels(entry: ModelEntry, count: int, label: int | None) -> Tensor | None:
    """Labels for a conditional model: all `label`, or 0, 1, 2, ... in turn for EACH_CLASS; None otherwise."""
    if label is None or entry.num_classes is None:
        return None
    if label == EACH_CLASS:
        return torch.arange(count, device=entry.device) % entry.num_classes
    return torch.full((count,), label, dtype=torch.long, device=entry.device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_sampling(
    entry: ModelEntry,
    settings: SamplerSettings,
    x_T: Tensor,
    *,
    seed: int,
    labels: Tensor | None = None,
    guidance: float = 1.0,
    compute: Callable[[Callable[[], Any]], Any] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[Step, Trajectory]]:
    """Sample from x_T, yielding (step, trajectory so far) after every network call; the trajectory records
    every step (see explorer.trajectory). Ends early, between steps, when stop() returns True."""
    schedule = entry.checkpoint.schedule
    sampler = make_sampler(
        settings.sampler,
        schedule,
        eta=settings.eta,
        objective=entry.checkpoint.objective,
        clip_x0=True,  # pixels and the 2D toy sets both live in [-1, 1]
    )
    generator = torch.Generator().manual_seed(seed + STEP_NOISE_OFFSET)
    trajectory = Trajectory(
        settings.title,
        x_T.detach().float().cpu(),
        settings.steps,
        entry.is_points,
        entry.reference_points,
        schedule,
        dataset=entry.dataset_name,
    )
    steps = denoise(entry.model, sampler, x_T, settings.steps, y=labels, guidance_scale=guidance, generator=generator)

    def timed_step() -> tuple[Step | None, float]:
        start = time.perf_counter()
        step = next(steps, None)
        _synchronize(x_T.device)
        return step, time.perf_counter() - start

    compute = compute if compute is not None else (lambda fn: fn())
    while not (stop is not None and stop()):
        step, seconds = compute(timed_step)
        trajectory.seconds += seconds
        if step is None:
            return
        trajectory.add(step)
        yield step, trajectory


def sample_request(
    entry: ModelEntry,
    request: SampleRequest,
    settings: SamplerSettings | None = None,
    **options,
) -> Iterator[tuple[Step, Trajectory]]:
    """run_sampling for a checked request (or the request with other sampler settings: compare mode's second
    side), from the request's own x_T."""
    x_T = starting_noise(entry, request.count, request.seed)
    labels = class_labels(entry, request.count, request.label)
    return run_sampling(
        entry,
        settings or request.settings,
        x_T,
        seed=request.seed,
        labels=labels,
        guidance=request.guidance,
        **options,
    )
