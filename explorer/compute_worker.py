"""The app's one compute thread: every step of every heavy run (a training step, a preview, a sampling step) runs
here, sampling steps before training steps, so the active runs take turns step by step.

Two reasons for one thread. On a 2-core CPU two runs computing at once are not twice as slow but up to a hundred
times (each one's OpenMP threads spin-wait for cores the other holds). And PyTorch's OpenMP pool belongs to the
thread that calls it: Gradio advances a generator on whichever of its worker threads is free, every such thread
brought its own pool, and with more pool threads than cores libgomp stops spinning between parallel regions, which
cost the live training 40% of its speed (721 vs 1,150 images/s). So the worker alone computes with every core and
the app's other threads with one (`single_thread_elsewhere`): 967 images/s through the server. A step is short (a
training step of "tiny" is ~50 ms on 2 cores), so Stop and page updates stay prompt.

Which runs may compute at all is decided before, by explorer.sessions.SessionRegistry's admission.

On a GPU the same thread launches every run's kernels, one step at a time, so several users share one GPU in turns
as they share the cores; what each run may hold in the GPU's memory meanwhile is checked before it starts
(explorer/gpu_memory.py). On ZeroGPU a run's GPU work leaves this thread for a lent GPU (explorer/zero_gpu.py).
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import torch

from core.device import available_cores

# the compute worker runs the lower first: a training's start (its model and first step, ~0.1 s alone,
# once per run), which a student watches for the first loss point, then sampling steps (short), then training steps
PRIORITY = {"starting": -1, "sampling": 0, "training": 1}


T = TypeVar("T")


class ComputeWorker:
    """One thread that runs every heavy step: `worker(fn)` runs fn() there and returns its result (or raises its
    exception) in the calling thread; `lane(priority)` is a `worker` for one priority (0 first; see `PRIORITY`).

    Which waiting step runs next: the most favoured lane's oldest, except that after FAVOURED_STREAK favoured steps
    in a row while a lower lane waited, or favoured steps of FAVOURED_SECONDS in all, one step of the least favoured
    waiting lane runs (so sampling goes first but a training is never starved: it keeps at least one step in
    FAVOURED_STREAK + 1, and one about every FAVOURED_SECONDS when a class's merged sampling calls are long). After
    a favoured step the worker keeps GRACE seconds for that lane's next step: a run asks for its next step a moment
    after its last one returns, and without the grace a training step (50 ms) slips into every such gap. Measured
    with the load test's 4 clients (3 sampling, 1 training; `--clients 4 --seconds 30`): a sample's median latency
    8.8 s with steps in arrival order, 6.0 s with this policy (3.6 s with sampling strictly first, but then the 10-s
    training took 19 s to answer, its previews waiting behind every sample).

    It computes with `threads` OpenMP threads (default: one per available core); call `single_thread_elsewhere()`
    once it exists so that every other thread of the process computes alone (see the module docstring)."""

    GRACE = 0.03  # seconds kept for a favoured lane's next step
    FAVOURED_STREAK = 4  # favoured steps in a row before a waiting lower lane gets one
    FAVOURED_SECONDS = 0.25  # or favoured steps of this many seconds in a row

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or available_cores()
        self._lanes: dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._ready = threading.Condition()
        self._streak = 0  # favoured steps in a row while a lower lane waited
        self._streak_seconds = 0.0  # and the seconds they took
        self._thread: threading.Thread | None = None

    def __call__(self, fn: Callable[[], T], priority: int = 0) -> T:
        return self.submit(fn, priority).result()

    def submit(self, fn: Callable[[], T], priority: int = 0) -> Future:
        """Queue fn() on the worker without waiting: its Future gets the result (or the exception)."""
        future: Future = Future()
        with self._ready:
            if self._thread is None:  # the thread starts with the first step
                self._thread = threading.Thread(target=self._serve, name="ddpm-explorer-compute", daemon=True)
                self._thread.start()
            self._lanes[priority].append((fn, future))
            self._ready.notify_all()
        return future

    def lane(self, priority: int) -> Callable[[Callable[[], T]], T]:
        """A `worker` whose steps all have this priority."""
        return functools.partial(self, priority=priority)

    def _waiting(self) -> list[int]:  # with self._ready held
        return sorted(priority for priority, steps in self._lanes.items() if steps)

    def _next(self, last: int | None) -> tuple[int, Callable[[], Any], Future]:
        with self._ready:
            self._ready.wait_for(self._waiting)
            waiting = self._waiting()
            favoured_last = last is not None and last < max(PRIORITY.values())
            if favoured_last and waiting[0] > last and self._streak < self.FAVOURED_STREAK:
                self._ready.wait_for(lambda: self._lanes[last], timeout=self.GRACE)  # that run's next step
                waiting = self._waiting()
            streak_over = self._streak >= self.FAVOURED_STREAK or self._streak_seconds >= self.FAVOURED_SECONDS
            if len(waiting) > 1 and streak_over:
                chosen, self._streak = waiting[-1], 0
            else:
                chosen = waiting[0]
                self._streak = self._streak + 1 if len(waiting) > 1 else 0
            if not self._streak:
                self._streak_seconds = 0.0
            fn, future = self._lanes[chosen].popleft()
            return chosen, fn, future

    def _serve(self) -> None:
        torch.set_num_threads(self.threads)
        torch.ones(1 << 17).add_(1)  # a parallel op: this thread's OpenMP pool is made now, with `threads`
        last = None
        while True:
            last, fn, future = self._next(last)
            start = time.perf_counter()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as error:  # handed to the caller, who raises it
                    future.set_exception(error)
            if self._streak:  # a favoured step while a lower lane waited
                self._streak_seconds += time.perf_counter() - start
            del fn, future  # a finished step's closure (and its tensors) must not live on until the next step


def single_thread_elsewhere() -> None:
    """Make every thread but the compute worker (this one, and those started later) compute with one thread.
    libgomp keeps an OpenMP pool per thread that ever ran a parallel region, and once the process holds more pool
    threads than cores it stops spinning between regions: the compute worker's training then ran at 800 instead
    of 1,200 images/s. Only the worker gets a pool this way."""
    torch.set_num_threads(1)
