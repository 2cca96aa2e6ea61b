"""The one loop every heavy run goes through: admission, queue position, streaming, Stop, session close, errors.

A tab describes its run as `work(job)`, a generator of page updates that computes through `job.compute` and asks
`job.stopped()` between steps; `run_job` does the rest, the same way for Train, Sample, Compare and whatever comes
next:

* admission: the session's registry gives the run a place of its kind or refuses it (one run per user, a full
  queue) with a message the user reads (gr.Error);
* queue position: while the run waits it yields `waiting(message)` about once a second ("number 3 in the
  queue"); stopped while waiting, it yields `waiting("Stopped before it started.")` and ends;
* Stop and session close: `job.stopped()` is true once the user pressed Stop or left the page;
* GPU memory: a run whose estimated need is over its share of the GPU (`memory=`, or `job.check_memory` once the
  run knows it, e.g. after loading its data) is refused with advice (explorer.gpu_memory);
* errors: the exceptions a run is expected to raise (bad data, out of memory) become gr.Error with their message;
  out of memory, expected or not, becomes advice for its kind, and the cache it held is given back;
* the place is freed when the run ends, however it ends (finished, stopped, failed, or the page went away while
  the generator was suspended: Gradio closes it, and the `finally` runs).

`throttled` thins a stream of live frames to what a page (and a busy server) can show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr
import torch

from explorer.gpu_memory import (
    Need,
    OverMemoryBudget,
    is_out_of_memory,
    out_of_memory_advice,
    release_cached_memory,
)
from explorer.sessions import JobRefused, JobTicket, SessionRegistry, UserSession, busy_message

Out = TypeVar("Out")
Item = TypeVar("Item")
STOPPED_WHILE_WAITING = "Stopped before it started."


@dataclass(frozen=True)
class Job:
    """What a run's `work` gets: where to compute and whether to stop."""

    ticket: JobTicket
    compute: Callable[[Callable[[], Any]], Any]  # runs a step on the compute worker's lane for this kind
    registry: SessionRegistry

    @property
    def session(self) -> UserSession:
        return self.ticket.session

    def stopped(self) -> bool:
        """True once the user pressed Stop or left the page (their session was closed)."""
        return self.ticket.stop_requested or self.ticket.session.closed

    def check_memory(self, need: Need) -> None:
        """Raise OverMemoryBudget (advice) when `need` bytes (or its estimate, if callable) are over this run's share
        of the GPU."""
        self.registry.check_memory(need, self.ticket.kind)


def run_job(
    registry: SessionRegistry,
    session: UserSession,
    kind: str,
    work: Callable[[Job], Iterator[Out]],
    *,
    waiting: Callable[[str], Out],
    expected_errors: tuple[type[Exception], ...] = (),
    memory: Need = None,
) -> Iterator[Out]:
    """Run `work` as a heavy job of `kind` ("training" or "sampling") for this session (see the module docstring).
    Yields what `work` yields, preceded by `waiting(message)` while the job waits for a place. `memory`: the
    run's estimated GPU bytes (or how to estimate them), if known before it starts."""
    try:
        with registry.job(session, kind) as ticket:
            for position in registry.waiting(ticket):
                yield waiting(busy_message(position, kind))
            if ticket.stop_requested:
                yield waiting(STOPPED_WHILE_WAITING)
                return
            job = Job(ticket, registry.compute_for(kind), registry)
            try:
                job.check_memory(memory)
                yield from work(job)
            except (OverMemoryBudget, *expected_errors) as error:
                if is_out_of_memory(error):
                    release_cached_memory()
                raise gr.Error(str(error)) from None
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
                release_cached_memory()
                raise gr.Error(out_of_memory_advice(kind)) from None
    except JobRefused as error:  # only entering the queue refuses
        raise gr.Error(str(error)) from None


def throttled(
    items: Iterable[Item],
    interval: float | Callable[[], float],
    *,
    always: Callable[[Item], bool] = lambda item: False,
) -> Iterator[Item]:
    """The items at least `interval` seconds apart (the first one at once), and every item for which `always` is
    true (a run's last step): a page shows at most 1/interval live frames a second however fast the steps are.
    `interval` may be a function, asked at every item (fewer frames for everyone while the server is busy)."""
    shown = None
    for item in items:
        now = time.perf_counter()
        gap = interval() if callable(interval) else interval
        if shown is None or now - shown >= gap or always(item):
            shown = now
            yield item
