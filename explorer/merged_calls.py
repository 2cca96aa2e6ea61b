"""Network calls of concurrent sampling runs merged into one batched call: a class pressing Sample together costs
the server a few large network calls instead of thirty rounds of small ones.

Each sampling run keeps its own sampler, x_T, seed, noise and class labels, and steps through core.samplers.denoise
in its own thread; only the network call leaves it. `MergedCalls.joined(model)` hands the run a stand-in for the
model (`MergedModel`, the same forward(x, t, y) signature) whose forward queues the call and waits. On the compute
worker, one flush takes every waiting call of that model (same input shape, dtype and kind of labels), concatenates
them along the batch, runs the network once and hands each run its own rows back. The network treats every row
alone (the time t is per row, GroupNorm normalises per sample, attention stays inside a picture), so a merged run
gives its run-alone result: equal to float rounding, because a convolution's kernel may sum in another order at
another batch size (tests/test_merged_calls.py states the tolerance).

A flush waits at most GATHER seconds for the model's other open runs to ask for their next call (they come back
from drawing their page a few milliseconds apart), so that their calls share one batch instead of trickling into
many small ones; a lone run never waits. At most MAX_BATCH rows go into one call; the rest are in the next flush.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

GATHER = 0.05  # seconds a flush waits for the model's other open runs to ask for their next call
MAX_BATCH = 128  # rows in one merged call: ~60 ms on 2 cores, so a training waits little for its turn. Chosen from
# exploratory runs of `benchmarks/load_test.py --burst --no-write` (not recorded in RESULTS.md): 128 rows answered a
# class of 30 no slower than 256 or 1024 and with the least memory; RESULTS.md "Classroom burst" measures the choice

Submit = Callable[[Callable[[], object]], Future]  # queues fn on the compute worker's sampling lane


@dataclass(eq=False)
class _Call:
    x: Tensor
    t: Tensor
    y: Tensor | None
    result: Future = field(default_factory=Future)


@dataclass
class MergeStats:
    """What merging did so far: network calls made, calls asked for, and the most rows in one call."""

    flushes: int = 0
    calls: int = 0
    widest: int = 0

    @property
    def calls_per_flush(self) -> float:
        return self.calls / max(self.flushes, 1)


class MergedCalls:
    """Merges the network calls of concurrent runs of the same model (see the module docstring). `submit` queues a
    function on the compute worker and returns its Future (ComputeWorker.submit for the sampling lane)."""

    def __init__(self, submit: Submit, *, gather: float = GATHER, max_batch: int = MAX_BATCH) -> None:
        self._submit = submit
        self.gather = gather
        self.max_batch = max_batch
        self.stats = MergeStats()
        self._lock = threading.Condition()
        self._open: collections.Counter[int] = collections.Counter()  # id(model) -> runs that may call it
        self._pending: dict[tuple, list[_Call]] = {}  # merge key -> calls waiting for a flush
        self._scheduled: set[tuple] = set()  # merge keys with a flush queued on the worker

    @contextmanager
    def joined(self, model: nn.Module) -> Iterator[MergedModel]:
        """`with merged.joined(model) as network:` a run whose network calls merge with the other open runs' of
        this model until the block ends."""
        with self._lock:
            self._open[id(model)] += 1
        try:
            yield MergedModel(model, self)
        finally:
            with self._lock:
                self._open[id(model)] -= 1
                if not self._open[id(model)]:
                    del self._open[id(model)]
                self._lock.notify_all()  # a flush waiting for this run stops waiting

    def forward(self, model: nn.Module, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        """model(x, t, y) computed in a merged call on the compute worker; blocks until it is done."""
        call = _Call(x, t, y)
        key = (id(model), y is None, t.dtype, x.dtype, x.device, tuple(x.shape[1:]))
        with self._lock:
            self._pending.setdefault(key, []).append(call)
            schedule = key not in self._scheduled
            self._scheduled.add(key)
            self._lock.notify_all()  # a flush gathering for this model counts one more
        if schedule:
            self._submit(lambda: self._flush(model, key))
        return call.result.result()

    def _waiting_calls(self, model_id: int) -> int:  # with self._lock held
        return sum(len(calls) for key, calls in self._pending.items() if key[0] == model_id)

    def _take(self, model: nn.Module, key: tuple) -> list[_Call]:
        """The calls this flush computes: wait (at most `gather` s) for every open run of the model to be waiting,
        then take up to max_batch rows; what is left gets a flush of its own."""
        with self._lock:
            self._lock.wait_for(lambda: self._waiting_calls(id(model)) >= self._open[id(model)], timeout=self.gather)
            waiting = self._pending.pop(key)
            taken, rows = [], 0
            while waiting and (not taken or rows + len(waiting[0].x) <= self.max_batch):
                rows += len(waiting[0].x)
                taken.append(waiting.pop(0))
            if waiting:
                self._pending[key] = waiting
                self._submit(lambda: self._flush(model, key))
            else:
                self._scheduled.discard(key)
            return taken

    def _flush(self, model: nn.Module, key: tuple) -> None:
        """On the compute worker: one network call for the calls taken, each handed its own rows."""
        calls = self._take(model, key)
        try:
            with torch.no_grad():  # grad mode is per thread: the runs' no_grad does not reach the worker
                if len(calls) == 1:
                    outputs = [model(calls[0].x, calls[0].t, calls[0].y)]
                else:
                    y = None if calls[0].y is None else torch.cat([c.y for c in calls])
                    merged = model(torch.cat([c.x for c in calls]), torch.cat([c.t for c in calls]), y)
                    outputs = merged.split([len(c.x) for c in calls])
        except BaseException as error:  # every run of the batch hears of it (out of memory, ...)
            for call in calls:
                call.result.set_exception(error)
            return
        self.stats.flushes += 1
        self.stats.calls += len(calls)
        self.stats.widest = max(self.stats.widest, sum(len(c.x) for c in calls))
        for call, output in zip(calls, outputs, strict=True):
            call.result.set_result(output)


class MergedModel(nn.Module):
    """A model's stand-in for one sampling run: the same forward(x, t, y=None), computed in merged calls; its
    parameters and `num_classes` are the model's (so core.samplers sees the model it wraps)."""

    def __init__(self, model: nn.Module, merged: MergedCalls) -> None:
        super().__init__()
        self.model = model
        self.num_classes = getattr(model, "num_classes", None)
        self._merged = merged

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self._merged.forward(self.model, x, t, y)
