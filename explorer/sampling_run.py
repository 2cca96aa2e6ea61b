"""Sampling for the Sample tab: checked settings, the starting noise x_T from a seed, and runs that yield every
network call of core.samplers.denoise into a `Trajectory`.

The samplers by the names the page shows (`SAMPLER_LABELS`: "DDPM", "DDIM", "Euler", ... for core.samplers' "ddpm",
"ddim", "euler", ...), each with a timestep spacing (core.noise_levels.SPACINGS). `check_settings` refuses what a
model cannot run with a message that says why: an unknown sampler or spacing, steps outside 1..T, Karras sigmas or
Euler and Heun on a schedule with zero terminal SNR, and an eps-predicting model asked to start at alpha-bar = 0.

A run takes turns on the cores with every other heavy run: each network step runs through `compute` (the app's one
compute thread, explorer.compute_worker.ComputeWorker; by default the caller's own thread), and the run ends at the next
step when `stop()` says so. Compare mode runs two settings from the very same x_T (and the same
seed for any noise the samplers add along the way), so the difference between the two pictures is the sampler's
alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from core.noise_levels import SPACINGS
from core.sampler_base import Step, draw_noise
from core.samplers import SAMPLERS, denoise, each_class, make_sampler
from core.schedules import NoiseSchedule
from core.sdedit import levels_from
from explorer.denoiser_field import run_field
from explorer.gpu_memory import sampling_need
from explorer.merged_calls import MergedCalls
from explorer.models import ModelEntry
from explorer.trajectory import Trajectory
from explorer.zero_gpu import gpu_stream, sampling_seconds, task_device, zero_gpu_active

MAX_IMAGES = 64
PIXEL_BUDGET = MAX_IMAGES * 32 * 32  # pixels one run draws at most: 64 pictures of 32x32, 16 of 64x64, 1 of 256x256
MAX_POINTS = 2000
MAX_GUIDANCE = 10.0
MAX_SEED = 2**31 - 1
EACH_CLASS = -1  # label value meaning "each class in turn" (0, 1, 2, ...)
STEP_NOISE_OFFSET = 1  # the noise added during sampling uses seed + 1, x_T uses seed
SAMPLER_LABELS: dict[str, str] = {  # core.samplers' name -> the name the page shows (and the API takes)
    "ddpm": "DDPM",
    "ddim": "DDIM",
    "euler": "Euler",
    "euler_ancestral": "Euler ancestral",
    "heun": "Heun",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
}


def sampler_name(value: object) -> str:
    """core.samplers' name of a sampler given by its label ("DPM++ 2M") or its name ("dpmpp_2m"), in any case;
    ValueError listing the labels otherwise."""
    text = str(value).strip().lower()
    for name, label in SAMPLER_LABELS.items():
        if text in (name, label.lower()):
            return name
    raise ValueError(f"sampler must be one of {', '.join(SAMPLER_LABELS.values())}, got {value!r}")


def sampler_label(name: str, eta: float = 0.0) -> str:
    """The page's name of a sampler; DDIM with its eta ("DDIM eta 0")."""
    return f"DDIM eta {eta:g}" if name == "ddim" else SAMPLER_LABELS[name]


@dataclass(frozen=True)
class SamplerSettings:
    """Which sampler, how many steps, DDIM's eta (0 deterministic, 1 as noisy as DDPM) and the timestep spacing."""

    sampler: str  # a key of core.samplers.SAMPLERS
    steps: int
    eta: float = 0.0  # DDIM only
    spacing: str = "leading"  # one of core.noise_levels.SPACINGS

    @property
    def calls(self) -> int:
        """Network calls per sample: the steps, but 2 steps - 1 for Heun."""
        return SAMPLERS[self.sampler].network_calls(self.steps)

    @property
    def label(self) -> str:
        return SAMPLER_LABELS[self.sampler]

    @property
    def title(self) -> str:
        """e.g. "DDIM, 50 steps, eta 0, leading spacing" or "Heun, 5 steps (9 network calls), karras spacing"."""
        calls = f" ({self.calls} network calls)" if self.calls != self.steps else ""
        eta = f", eta {self.eta:g}" if self.sampler == "ddim" else ""
        return f"{self.label}, {self.steps} steps{calls}{eta}, {self.spacing} spacing"


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


def check_settings(
    entry: ModelEntry, sampler: str, steps: object, eta: object, spacing: str | None = None
) -> SamplerSettings:
    """SamplerSettings for this model, or ValueError naming the bad value and the allowed range, or saying why this
    sampler cannot start on this model's schedule. spacing None: the one the model's checkpoint records."""
    name = sampler_name(sampler)
    schedule = entry.checkpoint.schedule
    steps = _whole("steps", steps, 1, schedule.num_timesteps)
    eta = _number("eta", eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be from 0 to 1, got {eta:g}")
    spacing = entry.sampling_defaults.spacing if spacing is None else spacing
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    settings = SamplerSettings(name, steps, eta if name == "ddim" else 0.0, spacing)
    levels = make_sampler(name, schedule, objective=entry.checkpoint.objective, spacing=spacing).levels(steps)
    if entry.checkpoint.objective == "eps" and levels.alpha_bars[0] == 0.0:
        raise ValueError(
            f"{settings.label} with the {spacing} spacing starts at t = {levels.timesteps[0]:g}, where alpha-bar is 0 "
            "(zero terminal SNR), and this model predicts the noise eps, which cannot be read from pure noise; choose "
            "the 'leading' spacing (it starts below T-1)"
        )
    return settings


def max_count(entry: ModelEntry) -> int:
    """The most samples one run of this model draws: MAX_POINTS 2D points, or as many pictures as fit PIXEL_BUDGET
    (at most MAX_IMAGES, at least one): large pictures cost the 2 shared cores as much per pixel as small ones."""
    if entry.is_points:
        return MAX_POINTS
    side = entry.checkpoint.sample_shape[-1]
    return max(1, min(MAX_IMAGES, PIXEL_BUDGET // (side * side)))


def check_request(
    entry: ModelEntry,
    sampler: str,
    steps: object,
    eta: object,
    seed: object,
    count: object,
    label: object = None,
    guidance: object = 1.0,
    spacing: str | None = None,
) -> SampleRequest:
    """A SampleRequest, or ValueError for any value out of range (whether it came from the page or a script).
    label: None, a class 0..num_classes-1, or EACH_CLASS; ignored (None) for an unconditional model. spacing: see
    check_settings."""
    settings = check_settings(entry, sampler, steps, eta, spacing)
    seed = _whole("seed", seed, 0, MAX_SEED)
    count = _whole("number of points" if entry.is_points else "number of images", count, 1, max_count(entry))
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
        return each_class(entry.num_classes, count, entry.device)
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
    merged: MergedCalls | None = None,
    stop: Callable[[], bool] | None = None,
    start_t: int | None = None,
) -> Iterator[tuple[Step, Trajectory]]:
    """Sample from x_T, yielding (step, trajectory so far) after every network call; the trajectory records
    every call (see explorer.trajectory). Ends early, between calls, when stop() returns True. start_t: x_T is a
    picture noised to this timestep (SDEdit, core.sdedit): the run denoises it over the levels below start_t.

    Where it computes: with `merged`, the sampler steps in the caller's thread and every network call merges
    with other runs' calls of the same model on the compute worker (explorer.merged_calls); otherwise each whole
    step runs through `compute` (default: the caller's thread). The trajectory's seconds are the run's wall time
    either way (with `merged`, the wait for the merged call included)."""
    with merged.joined(entry.model) if merged is not None else nullcontext(entry.model) as network:
        yield from _steps(entry, settings, x_T, network, seed, labels, guidance, compute, stop, start_t)


def _steps(
    entry: ModelEntry,
    settings: SamplerSettings,
    x_T: Tensor,
    network: nn.Module,
    seed: int,
    labels: Tensor | None,
    guidance: float,
    compute: Callable[[Callable[[], Any]], Any] | None,
    stop: Callable[[], bool] | None,
    start_t: int | None = None,
) -> Iterator[tuple[Step, Trajectory]]:
    schedule = entry.checkpoint.schedule
    steps, title = settings.steps, settings.title
    if start_t is not None:  # SDEdit: only the levels below start_t (core.sdedit.levels_from)
        sampler = make_sampler(
            settings.sampler, schedule, objective=entry.checkpoint.objective, spacing=settings.spacing
        )
        steps = len(levels_from(sampler, settings.steps, start_t))
        title = f"{title}, started at t = {start_t}: {steps} steps"
    trajectory = Trajectory(
        title,
        x_T.detach().float().cpu(),
        SAMPLERS[settings.sampler].network_calls(steps),
        entry.is_points,
        entry.reference_points,
        schedule,
        dataset=entry.dataset_name,
        num_steps=steps,
        sampler=settings.label,
    )
    if entry.is_points:  # the replay slider draws the network's arrows at each step's t (explorer.denoiser_field)
        objective, clip_x0 = entry.checkpoint.objective, entry.checkpoint.clip_x0
        trajectory.denoiser_field = run_field(entry.model, schedule, objective, clip_x0, labels, guidance)
    task = SamplingTask(
        network,
        schedule,
        entry.checkpoint.objective,
        settings,
        x_T,
        seed,
        labels,
        guidance,
        entry.checkpoint.clip_x0,
        start_t,
    )
    if zero_gpu_active():  # the whole run is one ZeroGPU call on the model itself; steps come back as they are made
        task = dataclasses.replace(task, network=entry.model, x_T=x_T.cpu(), labels=_on_cpu(labels))
        steps = gpu_stream(task, sampling_seconds(settings.calls))
        compute = None  # ZeroGPU lends every call a GPU of its own: nothing to take turns for here
    else:
        steps = task.steps()

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


@dataclass(frozen=True)
class SamplingTask:
    """A sampling run as one piece of work: `steps()` where it is (the app's compute worker drives it step by
    step), or called, on the GPU of a ZeroGPU call, yielding every step on the CPU (explorer/zero_gpu.py: the task
    is pickled to the GPU's process, the steps back)."""

    network: nn.Module
    schedule: NoiseSchedule
    objective: str
    settings: SamplerSettings
    x_T: Tensor
    seed: int
    labels: Tensor | None
    guidance: float
    clip_x0: bool = True  # our models: pixels and the 2D toy sets live in [-1, 1]; a diffusers model: clip_sample
    start_t: int | None = None  # SDEdit: x_T is a picture noised to this timestep (core.sdedit)

    def steps(self) -> Iterator[Step]:
        """core.samplers.denoise with these settings on the network and x_T where they are."""
        sampler = make_sampler(
            self.settings.sampler,
            self.schedule,
            eta=self.settings.eta,
            objective=self.objective,
            clip_x0=self.clip_x0,
            spacing=self.settings.spacing,
        )
        generator = torch.Generator().manual_seed(self.seed + STEP_NOISE_OFFSET)
        return denoise(
            self.network,
            sampler,
            self.x_T,
            self.settings.steps,
            y=self.labels,
            guidance_scale=self.guidance,
            generator=generator,
            start_t=self.start_t,
        )

    def __call__(self) -> Iterator[Step]:
        device = task_device()
        moved = dataclasses.replace(
            self, network=self.network.to(device), x_T=self.x_T.to(device), labels=_on(self.labels, device)
        )
        with torch.no_grad():
            for step in moved.steps():
                back = {name: getattr(step, name).cpu() for name in ("x_t", "pred_x0", "pred_eps")}
                yield step._replace(**back, guidance_x0=_on_cpu(step.guidance_x0))


def _on(tensor: Tensor | None, device: torch.device | str) -> Tensor | None:
    return tensor.to(device) if tensor is not None else None


def _on_cpu(tensor: Tensor | None) -> Tensor | None:
    return _on(tensor, "cpu")


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


def memory_need(entry: ModelEntry, request: SampleRequest) -> int | None:
    """The request's estimated GPU bytes (explorer.gpu_memory.sampling_need; None for a model it cannot estimate),
    checked against the run's share of the GPU before it starts (explorer.jobs.run_job's `memory`)."""
    return sampling_need(entry.model, tuple(entry.checkpoint.sample_shape), request.count, request.guidance != 1.0)
