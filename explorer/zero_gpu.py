"""Hugging Face ZeroGPU: a run's GPU work as one `spaces.GPU(duration=...)` call sized to the run; everywhere else
the same code runs unchanged, without the `spaces` package.

On ZeroGPU hardware ($SPACES_ZERO_GPU=true, set by Hugging Face) a Space has no GPU of its own: each call of a
function decorated with `spaces.GPU` is lent one (a slice of an H200) for at most `duration` seconds, in a process
forked from the app's. Three things follow, and shape what runs there:

1. CUDA is used only inside such a call. The app's own state (models, trainers, data) stays on the CPU in the main
   process: `configure()` sets $DDPM_EXPLORER_DEVICE=cpu (core.device.pick_device) before anything is built, and
   imports `spaces` before CUDA can start, as ZeroGPU requires.
2. What a call changes in its process is lost when it returns; its arguments and what it yields cross the process
   boundary by pickling. So a call is a whole piece of work that sends back what it made: a sampling run (every
   network call's step, on the CPU: explorer.sampling_run.SamplingTask) or a training run (its progress frames as
   it goes, its weights in a checkpoint folder at the end: explorer.training_run.TrainingTask). Stop reaches a
   training in its process through a file (`StopFile`).
3. Each call waits in ZeroGPU's queue and counts against the user's daily GPU quota by its requested duration,
   and ZeroGPU ends a call that runs past it. So the duration is sized to the run (`sampling_seconds`,
   `training_seconds`): START_SECONDS for the model to reach the GPU, plus the run's own length.

`gpu_stream(task, seconds)` runs `task()` (a picklable callable that yields results) as one such call on ZeroGPU,
and simply iterates it elsewhere. The per-step and per-second figures below are estimates for the small models of
this app (a network call of tiny or small for 64 pictures takes milliseconds on a GPU), not ZeroGPU measurements;
they err long, since an overrun is aborted while a generous request only waits a little longer in the queue.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from core.device import DEVICE_ENV

ZERO_GPU_ENV = "SPACES_ZERO_GPU"  # "true" on ZeroGPU hardware (the `spaces` package reads the same variable)
START_SECONDS = 15  # the model and data to the GPU, CUDA's start in a fresh process; a checkpoint saved at the end
SECONDS_PER_CALL = 0.05  # one network call of a sampling run (estimate, see the module docstring)
SECONDS_PER_STEP = 0.05  # one training step (estimate, see the module docstring)

T = TypeVar("T")


def zero_gpu_active() -> bool:
    """True on ZeroGPU hardware with the `spaces` package installed (then GPU work goes through `spaces.GPU`)."""
    on_zero_gpu = os.environ.get(ZERO_GPU_ENV, "").lower() in ("1", "t", "true")
    return on_zero_gpu and importlib.util.find_spec("spaces") is not None


def configure() -> bool:
    """Call before the app builds anything: on ZeroGPU, import `spaces` (before CUDA starts), keep the app's state
    on the CPU, and decorate the GPU function now (ZeroGPU reports the Space's GPU functions when the app launches
    and starts none without). Returns whether ZeroGPU is active; does nothing elsewhere."""
    if not zero_gpu_active():
        return False
    import spaces  # noqa: F401  (patches torch for ZeroGPU; must come before any CUDA use)

    os.environ.setdefault(DEVICE_ENV, "cpu")
    _decorated_stream()
    return True


def task_device() -> torch.device:
    """Where a task computes: the GPU its ZeroGPU call was lent (the CPU when a test runs a task without one)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sampling_seconds(network_calls: int) -> int:
    """The duration to ask for a sampling run of this many network calls."""
    return math.ceil(START_SECONDS + network_calls * SECONDS_PER_CALL)


def training_seconds(time_budget: float | None, steps: int | None) -> int:
    """The duration to ask for a training run: its time budget, else its steps, plus the start and the save."""
    length = time_budget if time_budget is not None else (steps or 0) * SECONDS_PER_STEP
    return math.ceil(START_SECONDS + length)


def _requested_duration(task: Callable[[], Iterator[Any]], seconds: int) -> int:
    """`spaces.GPU`'s duration, read from the call's arguments (one decorated function serves every run)."""
    return seconds


def _run_stream(task: Callable[[], Iterator[T]], seconds: int) -> Iterator[T]:
    """The body of the ZeroGPU call: iterate the task in the lent GPU's process."""
    yield from task()


@functools.cache
def _decorated_stream() -> Callable[..., Iterator[Any]]:
    import spaces

    return spaces.GPU(duration=_requested_duration)(_run_stream)


def gpu_stream(task: Callable[[], Iterator[T]], seconds: int) -> Iterator[T]:
    """What `task()` yields: on ZeroGPU from one `spaces.GPU` call of `seconds` (the task and what it yields are
    pickled across to the GPU's process and back), elsewhere by iterating it here."""
    if not zero_gpu_active():
        yield from task()
        return
    yield from _decorated_stream()(task, seconds)


class StopFile:
    """Stop for a run in another process: the app touches the file, the run checks for it between steps."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def request(self) -> None:
        self.path.touch()

    def requested(self) -> bool:
        return self.path.exists()
