"""Per-user state for training and sampling runs, and the limits that keep one shared server usable.

Every browser tab (Gradio's session hash; each gradio_client Client has its own) gets a `UserSession`: its own
models, its last sampling trajectory, its own temporary folder, and at most one heavy job (a training or sampling
run) at a time. Nothing user-specific lives in module globals except the one `SessionRegistry` that hands these
out, so two users never see each other's models or files.

Heavy jobs are limited for the whole server in two ways:

* admission: at most `max_jobs[kind]` runs of each kind (training, sampling) are active; later ones wait in a
  first-come queue of their kind and are told "busy, position N" until their turn (`JobTicket`); beyond
  `max_waiting[kind]` waiting runs of a kind a new one is refused at once with "the server is full, try again in
  a minute" (a queue that only grows helps nobody). Kinds have places of their own so that a 16-picture sample (a
  second) never waits behind two minute-long trainings. Sampling has many more places than training (32 active,
  32 waiting against 2 and 8): active sampling runs of one model share each network call
  (explorer.merged_calls) and identical requests share one run (explorer.shared_runs, `shared_runs`), so a whole
  class sampling at once costs little more than one large batch, while each training costs its own steps;
* compute: every step of every active run runs on the one compute thread (explorer.compute_worker), sampling
  steps first, so the active runs take turns step by step;
* GPU memory: on CUDA a run whose estimated need is over its share of the GPU (what is free, and at most 1/N of
  it with N runs active) is refused with advice (`check_memory`, explorer.gpu_memory).

A session is closed (its run asked to stop, its models dropped, its folder deleted) when the user leaves the page
(`demo.unload`) or after `idle_timeout` seconds without a request (checked whenever any request arrives).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.device import pick_device
from explorer.compute_worker import PRIORITY, ComputeWorker
from explorer.gpu_memory import MemoryBudget, Need
from explorer.merged_calls import MergedCalls
from explorer.runs import RunList
from explorer.shared_runs import SharedRuns

LOCAL_SESSION = "local"  # the key of calls made without a Gradio request (tests, scripts)
DEFAULT_IDLE_TIMEOUT = 3600.0  # seconds without any request before a session is closed
MAX_JOBS_ENV = "DDPM_EXPLORER_MAX_JOBS"
MAX_WAITING_ENV = "DDPM_EXPLORER_MAX_WAITING"
MAX_SAMPLING_JOBS_ENV = "DDPM_EXPLORER_MAX_SAMPLING_JOBS"
MAX_SAMPLING_WAITING_ENV = "DDPM_EXPLORER_MAX_SAMPLING_WAITING"
KINDS = ("training", "sampling")
# Gradio runs up to this many training and sampling callbacks at once (one concurrency group): every place, active
# or waiting, of both kinds with the defaults (2 + 8 + 32 + 32), so that the registry's own queue, not Gradio's,
# decides which may compute and tells the others their place
HEAVY_GROUP = "heavy"
HEAVY_CONCURRENCY = 74


def _count_from_environment(name: str, default: int, minimum: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}") from None
    if count < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return count


def default_max_jobs() -> int:
    """Active training runs at once: $DDPM_EXPLORER_MAX_JOBS, else 2 (they share the cores step by step anyway;
    more only makes each slower)."""
    return _count_from_environment(MAX_JOBS_ENV, 2, 1)


def default_max_waiting() -> int:
    """Training runs that may wait for a place: $DDPM_EXPLORER_MAX_WAITING, else 8 (with 2 active trainings of a
    minute, the last one waits about four minutes); later ones are refused with a message to try again."""
    return _count_from_environment(MAX_WAITING_ENV, 8, 0)


def default_limits() -> tuple[dict[str, int], dict[str, int]]:
    """(active, waiting) places per kind: training from default_max_jobs/default_max_waiting; sampling
    $DDPM_EXPLORER_MAX_SAMPLING_JOBS (else 32) and $DDPM_EXPLORER_MAX_SAMPLING_WAITING (else 32): a class of 30
    pressing Sample together all run at once, in merged network calls (measured in benchmarks/load_test.py)."""
    active = {"training": default_max_jobs(), "sampling": _count_from_environment(MAX_SAMPLING_JOBS_ENV, 32, 1)}
    waiting = {"training": default_max_waiting(), "sampling": _count_from_environment(MAX_SAMPLING_WAITING_ENV, 32, 0)}
    return active, waiting


class JobRefused(RuntimeError):
    """A heavy job that cannot start now; the message says why and what to do."""


@dataclass(eq=False)
class JobTicket:
    """One heavy run's place: waiting in the queue (position >= 1) or active (position 0)."""

    session: UserSession
    kind: str  # "training" or "sampling"
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    @property
    def stop_requested(self) -> bool:
        return self.stop.is_set()


@dataclass(eq=False)
class UserSession:
    """Everything one user has: models they trained or uploaded, their finished runs, the last sampling
    trajectory, a temp folder."""

    key: str
    folder: Path
    models: dict[str, Any] = field(default_factory=dict)  # display name -> explorer.models.ModelEntry
    runs: RunList = field(default_factory=RunList)  # finished training runs, for the Experiments tab
    trajectory: Any = None  # the last explorer.trajectory.Trajectory
    stepping: Any = None  # the Train tab's model trained one step at a time (explorer.single_step)
    drawing: Any = None  # the Train tab's own 2D data set, clicked on a canvas (explorer.drawing.Drawing)
    job: JobTicket | None = None
    last_seen: float = field(default_factory=time.monotonic)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    closed: bool = False

    def new_path(self, prefix: str, suffix: str = "") -> Path:
        """A fresh path in this session's folder (nothing is created)."""
        return self.folder / f"{prefix}-{next(self.counter)}{suffix}"


class SessionRegistry:
    """Hands out UserSessions by key, admits heavy jobs, and closes idle sessions."""

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        max_jobs: int | dict[str, int] | None = None,
        max_waiting: int | dict[str, int] | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_models_per_session: int = 8,
        compute_threads: int | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir()) / "ddpm-explorer-sessions"
        default_active, default_waiting = default_limits()
        self.max_jobs = _per_kind(max_jobs, default_active)  # kind -> active places
        self.max_waiting = _per_kind(max_waiting, default_waiting)  # kind -> waiting places
        self.idle_timeout = idle_timeout
        self.max_models_per_session = max_models_per_session
        self.compute = ComputeWorker(compute_threads)
        self.merged_calls = MergedCalls(functools.partial(self.compute.submit, priority=PRIORITY["sampling"]))
        self.shared_runs = SharedRuns()  # identical sampling requests on shipped models
        self.memory = MemoryBudget(pick_device("auto"))  # each run's share of the GPU (explorer/gpu_memory.py)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._sessions: dict[str, UserSession] = {}
        self._active: list[JobTicket] = []
        self._waiting: list[JobTicket] = []

    # ---- sessions -------------------------------------------------------------------------------------------

    def session(self, key: str | None) -> UserSession:
        """The session of `key` (a Gradio session hash; None: the local session), created on first use. Also
        closes sessions idle for longer than idle_timeout."""
        key = key or LOCAL_SESSION
        now = time.monotonic()
        self.sweep(now)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                self.root.mkdir(parents=True, exist_ok=True)
                folder = Path(tempfile.mkdtemp(prefix="user-", dir=self.root))
                session = self._sessions[key] = UserSession(key, folder)
            session.last_seen = now
            return session

    def close(self, key: str | None) -> None:
        """The user left: stop their run, drop their models, runs and trajectory, delete their folder."""
        with self._lock:
            session = self._sessions.pop(key or LOCAL_SESSION, None)
        if session is not None:
            self._free(session)

    def sweep(self, now: float | None = None) -> list[str]:
        """Close sessions without a request for idle_timeout seconds (a running job counts as activity)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [key for key, s in self._sessions.items() if s.job is None and now - s.last_seen > self.idle_timeout]
            sessions = [self._sessions.pop(key) for key in idle]
        for session in sessions:
            self._free(session)
        return idle

    def _free(self, session: UserSession) -> None:
        session.closed = True
        if session.job is not None:
            session.job.stop.set()
        session.models.clear()
        session.runs.close()
        session.trajectory = None
        session.stepping = None
        session.drawing = None
        shutil.rmtree(session.folder, ignore_errors=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._sessions

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    # ---- heavy jobs -----------------------------------------------------------------------------------------

    def enter_queue(self, session: UserSession, kind: str) -> JobTicket:
        """Queue a heavy job for this session; JobRefused if the session already has one or the queue is full."""
        with self._lock:
            if session.job is not None:
                raise JobRefused(
                    f"You already have a {session.job.kind} run going. Stop it (or let it finish) before "
                    f"starting {'another' if session.job.kind == kind else 'a ' + kind + ' run'}."
                )
            active, waiting = self._count(self._active, kind), self._count(self._waiting, kind)
            if active >= self.max_jobs[kind] and waiting >= self.max_waiting[kind]:
                raise JobRefused(server_full_message(active, waiting, kind))
            ticket = JobTicket(session, kind)
            session.job = ticket
            self._waiting.append(ticket)
            self._admit()
            return ticket

    @staticmethod
    def _count(tickets: list[JobTicket], kind: str) -> int:
        return sum(ticket.kind == kind for ticket in tickets)

    def active(self, kind: str) -> int:
        """How many runs of this kind are computing now."""
        with self._lock:
            return self._count(self._active, kind)

    def position(self, ticket: JobTicket) -> int:
        """0 when the job may run; otherwise its 1-based place in the queue of its kind."""
        with self._lock:
            if ticket in self._active or ticket not in self._waiting:
                return 0
            return self._count(self._waiting[: self._waiting.index(ticket)], ticket.kind) + 1

    def wait_turn(self, ticket: JobTicket, timeout: float) -> int:
        """Wait up to `timeout` seconds for the job's turn (or a stop); returns position() afterwards."""
        with self._changed:
            self._changed.wait_for(lambda: ticket in self._active or ticket.stop.is_set(), timeout=timeout)
        return self.position(ticket)

    def waiting(self, ticket: JobTicket, poll: float = 1.0) -> Iterator[int]:
        """Yield the job's queue position (>= 1) about every `poll` seconds until it may run or is stopped."""
        position = self.position(ticket)
        while position > 0 and not ticket.stop_requested:
            yield position
            position = self.wait_turn(ticket, poll)

    def leave(self, ticket: JobTicket) -> None:
        """The job ended (finished, stopped or failed): free its place and let the next one in."""
        with self._lock:
            if ticket in self._active:
                self._active.remove(ticket)
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            if ticket.session.job is ticket:
                ticket.session.job = None
            self._admit()

    def _admit(self) -> None:  # with self._lock held
        for ticket in list(self._waiting):  # first come first served, within each kind
            if self._count(self._active, ticket.kind) < self.max_jobs[ticket.kind]:
                self._waiting.remove(ticket)
                self._active.append(ticket)
        self._changed.notify_all()

    def check_memory(self, need: Need, kind: str) -> None:
        """Refuse (OverMemoryBudget, with advice) a run of `kind` that needs more than its share of the GPU, the
        active runs of every kind sharing it."""
        with self._lock:
            active = len(self._active)
        self.memory.check(need, active, kind)

    def compute_for(self, kind: str) -> Callable[[Callable[[], Any]], Any]:
        """The compute worker's lane for a run of this kind (see PRIORITY)."""
        return self.compute.lane(PRIORITY[kind])

    @contextmanager
    def job(self, session: UserSession, kind: str) -> Iterator[JobTicket]:
        """`with registry.job(session, "training") as ticket:` holds a place until the block ends."""
        ticket = self.enter_queue(session, kind)
        try:
            yield ticket
        finally:
            self.leave(ticket)

    def request_stop(self, session: UserSession, kind: str | None = None) -> bool:
        """Ask the session's running job (of `kind`, if given) to stop at its next step; True if there was one."""
        job = session.job
        if job is None or (kind is not None and job.kind != kind):
            return False
        job.stop.set()
        with self._changed:
            self._changed.notify_all()
        return True

    def add_model(self, session: UserSession, name: str, entry: Any) -> str:
        """Register a model for this session only, under a unique display name; the oldest is dropped beyond
        max_models_per_session. Returns the name used."""
        with self._lock:
            unique, n = name, 2
            while unique in session.models:
                unique, n = f"{name} ({n})", n + 1
            session.models[unique] = entry
            while len(session.models) > self.max_models_per_session:
                session.models.pop(next(iter(session.models)))
            return unique


def _per_kind(value: int | dict[str, int] | None, default: dict[str, int]) -> dict[str, int]:
    """A limit for every kind: the defaults, one number for all kinds, or the given kinds' numbers over the
    defaults."""
    if value is None:
        return dict(default)
    if isinstance(value, dict):
        return {**default, **value}
    return dict.fromkeys(KINDS, value)


def server_full_message(active: int, waiting: int, kind: str) -> str:
    """What a user reads when their run is refused because the queue is full."""
    return (
        f"The server is full: {active} {kind} runs are going and {waiting} are waiting, so yours was not queued. "
        "Please try again in a minute (the other tabs work meanwhile)."
    )


def busy_message(position: int, kind: str) -> str:
    """What a queued user reads while they wait."""
    return (
        f"⏳ The server is busy: your {kind} run is number {position} in the queue. It starts by itself when a place "
        "frees up; you can keep exploring the other tabs meanwhile."
    )
