"""explorer/sessions.py: per-user sessions, one heavy job per user, a server-wide limit with a queue, a fair compute
lock, and cleanup when a user leaves or goes idle."""

import threading
import time

import pytest

from explorer.compute_worker import PRIORITY, ComputeWorker
from explorer.sessions import (
    JobRefused,
    SessionRegistry,
    busy_message,
    default_max_jobs,
    default_max_waiting,
)


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(tmp_path / "sessions", max_jobs=1, idle_timeout=60, compute_threads=1)


def test_each_key_gets_its_own_session_and_folder(registry):
    a, b = registry.session("a"), registry.session("b")
    assert a is registry.session("a") and a is not b
    assert a.folder != b.folder and a.folder.is_dir() and b.folder.is_dir()
    assert registry.session(None).key == "local"
    assert a.new_path("x", ".zip") != a.new_path("x", ".zip")
    assert len(registry) == 3


def test_one_heavy_job_per_user(registry):
    session = registry.session("a")
    ticket = registry.enter_queue(session, "training")
    with pytest.raises(JobRefused, match="already have a training run"):
        registry.enter_queue(session, "sampling")
    registry.leave(ticket)
    registry.leave(registry.enter_queue(session, "sampling"))  # free again


def test_server_limit_queues_with_positions(registry):
    tickets = [registry.enter_queue(registry.session(key), "sampling") for key in "abc"]
    assert [registry.position(t) for t in tickets] == [0, 1, 2]
    registry.leave(tickets[0])
    assert [registry.position(t) for t in tickets[1:]] == [0, 1]
    assert "number 1 in the queue" in busy_message(1, "sampling")
    registry.leave(tickets[2])  # a waiting job can leave too
    registry.leave(tickets[1])
    assert registry.session("c").job is None


def test_a_full_queue_refuses_new_runs_with_a_message_until_a_place_frees(tmp_path):
    registry = SessionRegistry(tmp_path / "s", max_jobs=2, max_waiting=1, compute_threads=1)
    served = [registry.enter_queue(registry.session(key), "training") for key in "abc"]
    assert [registry.position(t) for t in served] == [0, 0, 1]
    full = (
        r"server is full: 2 training runs are going and 1 are waiting, so yours was not queued.*try again in a minute"
    )
    with pytest.raises(JobRefused, match=full):
        registry.enter_queue(registry.session("d"), "training")
    assert registry.session("d").job is None  # the refused user holds nothing and can retry
    registry.leave(served[0])  # c is admitted, the queue has room again
    assert registry.position(registry.enter_queue(registry.session("d"), "training")) == 1


def test_sampling_has_places_of_its_own_beside_long_trainings(tmp_path):
    """A one-second sample must not wait behind minute-long trainings: each kind has max_jobs places and its own
    queue (positions count within the kind)."""
    registry = SessionRegistry(tmp_path / "s", max_jobs=1, max_waiting=1, compute_threads=1)
    training = [registry.enter_queue(registry.session(key), "training") for key in "ab"]
    sampling = [registry.enter_queue(registry.session(key), "sampling") for key in "cd"]
    assert [registry.position(t) for t in training + sampling] == [0, 1, 0, 1]
    registry.leave(sampling[0])
    assert registry.position(sampling[1]) == 0 and registry.position(training[1]) == 1


def test_waiting_yields_positions_until_admitted(registry):
    first = registry.enter_queue(registry.session("a"), "training")
    second = registry.enter_queue(registry.session("b"), "training")
    threading.Timer(0.3, registry.leave, [first]).start()
    positions = list(registry.waiting(second, poll=0.05))
    assert positions and set(positions) == {1}
    assert registry.position(second) == 0
    registry.leave(second)


def test_stop_reaches_a_waiting_job(registry):
    registry.enter_queue(registry.session("a"), "training")
    second_session = registry.session("b")
    second = registry.enter_queue(second_session, "training")
    threading.Timer(0.2, registry.request_stop, [second_session, "training"]).start()
    start = time.monotonic()
    assert list(registry.waiting(second, poll=5.0)) == [1]
    assert time.monotonic() - start < 2 and second.stop_requested
    assert not registry.request_stop(registry.session("c"))  # nothing running there


def test_close_stops_the_run_and_deletes_the_folder(registry):
    session = registry.session("a")
    (session.folder / "model.zip").write_bytes(b"x")
    ticket = registry.enter_queue(session, "training")
    session.models["m"] = object()
    registry.close("a")
    assert ticket.stop_requested and session.closed and not session.folder.exists() and not session.models
    assert "a" not in registry
    registry.leave(ticket)


def test_idle_sessions_are_swept_but_not_while_running(registry):
    idle, busy = registry.session("idle"), registry.session("busy")
    ticket = registry.enter_queue(busy, "training")
    later = time.monotonic() + 61
    assert registry.sweep(later) == ["idle"]
    assert not idle.folder.exists() and busy.folder.exists()
    registry.leave(ticket)
    assert registry.sweep(later + 1) == ["busy"]


def test_models_get_unique_names_and_a_cap(tmp_path):
    registry = SessionRegistry(tmp_path, max_jobs=1, max_models_per_session=2, compute_threads=1)
    session = registry.session("a")
    assert registry.add_model(session, "m", 1) == "m"
    assert registry.add_model(session, "m", 2) == "m (2)"
    assert registry.add_model(session, "n", 3) == "n"
    assert list(session.models) == ["m (2)", "n"]  # the oldest went


def test_compute_worker_runs_every_step_on_one_thread_in_arrival_order():
    worker, order, threads = ComputeWorker(threads=1), [], set()
    gate = threading.Event()
    blocker = threading.Thread(target=worker, args=(gate.wait,))  # holds the worker until the others queue up
    blocker.start()
    callers = []
    for i in range(5):

        def step(i=i):
            order.append(i)
            threads.add(threading.get_ident())
            return i * i

        caller = threading.Thread(target=lambda step=step: order.append(("result", worker(step))))
        caller.start()
        callers.append(caller)
        time.sleep(0.05)
    gate.set()
    for caller in [blocker, *callers]:
        caller.join(5)
    assert [x for x in order if not isinstance(x, tuple)] == [0, 1, 2, 3, 4]
    assert sorted(x[1] for x in order if isinstance(x, tuple)) == [0, 1, 4, 9, 16]
    assert len(threads) == 1 and threading.get_ident() not in threads


def queued_order(worker: ComputeWorker, steps: list[tuple[str, int]]) -> list[str]:
    """The order in which the worker runs `steps` (name, priority), all queued while it is busy."""
    order, gate = [], threading.Event()
    worker(lambda: None)  # the worker's thread is up and idle
    blocker = threading.Thread(target=worker, args=(gate.wait,))  # holds the worker until the others queue up
    blocker.start()
    time.sleep(0.05)
    callers = []
    for name, priority in steps:
        callers.append(threading.Thread(target=worker.lane(priority), args=(lambda name=name: order.append(name),)))
        callers[-1].start()
        time.sleep(0.02)  # a known order of arrival
    gate.set()
    for thread in [blocker, *callers]:
        thread.join(timeout=10)
    return order


def test_compute_worker_runs_waiting_sampling_steps_before_training_steps():
    train, sample = PRIORITY["training"], PRIORITY["sampling"]
    order = queued_order(ComputeWorker(threads=1), [("t1", train), ("s1", sample), ("t2", train), ("s2", sample)])
    assert order == ["s1", "s2", "t1", "t2"]


def test_compute_worker_never_starves_training():
    """After FAVOURED_STREAK sampling steps in a row with training waiting, one training step runs."""
    train, sample = PRIORITY["training"], PRIORITY["sampling"]
    steps = [("t1", train), ("t2", train)] + [(f"s{i}", sample) for i in range(1, 11)]
    order = queued_order(ComputeWorker(threads=1), steps)
    assert ComputeWorker.FAVOURED_STREAK == 4
    assert order == ["s1", "s2", "s3", "s4", "t1", "s5", "s6", "s7", "s8", "t2", "s9", "s10"]


def test_compute_worker_raises_the_step_error_in_the_caller():
    def fail():
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        ComputeWorker(threads=1)(fail)


def test_max_jobs_from_the_environment(monkeypatch):
    monkeypatch.setenv("DDPM_EXPLORER_MAX_JOBS", "3")
    assert default_max_jobs() == 3
    monkeypatch.setenv("DDPM_EXPLORER_MAX_JOBS", "0")
    with pytest.raises(ValueError, match="whole number >= 1"):
        default_max_jobs()
    assert default_max_waiting() == 8
    monkeypatch.setenv("DDPM_EXPLORER_MAX_WAITING", "0")
    assert default_max_waiting() == 0
    monkeypatch.setenv("DDPM_EXPLORER_MAX_WAITING", "many")
    with pytest.raises(ValueError, match="DDPM_EXPLORER_MAX_WAITING must be a whole number >= 0"):
        default_max_waiting()


def test_compute_worker_gives_training_a_step_after_long_sampling_steps():
    """Merged sampling calls of a whole class are long: after FAVOURED_SECONDS of them in a row, training gets a step
    even before FAVOURED_STREAK of them ran."""
    train, sample = PRIORITY["training"], PRIORITY["sampling"]
    worker = ComputeWorker(threads=1)
    long_step = ComputeWorker.FAVOURED_SECONDS * 0.6
    order, gate = [], threading.Event()
    worker(lambda: None)
    blocker = threading.Thread(target=worker, args=(gate.wait,))
    blocker.start()
    time.sleep(0.05)
    steps = [("t1", train)] + [(f"s{i}", sample) for i in range(1, 5)]
    callers = []
    for name, priority in steps:

        def step(name=name):
            order.append(name)
            if name.startswith("s"):
                time.sleep(long_step)

        callers.append(threading.Thread(target=worker.lane(priority), args=(step,)))
        callers[-1].start()
        time.sleep(0.02)
    gate.set()
    for thread in [blocker, *callers]:
        thread.join(timeout=10)
    assert order == ["s1", "s2", "t1", "s3", "s4"]
