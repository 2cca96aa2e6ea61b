"""explorer/jobs.py: the one loop of every heavy run (admission, queue position, streaming, Stop, session close,
errors, the place freed however the run ends), and the frame throttle."""

import threading
import time

import gradio as gr
import pytest

from explorer.jobs import STOPPED_WHILE_WAITING, run_job, throttled
from explorer.models import DEFAULT_MODEL
from explorer.sessions import SessionRegistry
from explorer.tabs.compare import CompareSection
from explorer.tabs.sample import SampleTab


class FakeRequest:
    def __init__(self, session_hash):
        self.session_hash = session_hash


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(tmp_path, max_jobs=1, max_waiting=1, compute_threads=1)


def counting_work(steps, seen):
    def work(job):
        for i in range(steps):
            if job.stopped():
                return
            seen.append(job.compute(lambda i=i: i * i))
            yield f"step {i}"

    return work


def test_a_job_streams_its_work_on_the_compute_worker_and_frees_its_place(registry):
    session, seen = registry.session("alice"), []
    outputs = list(run_job(registry, session, "sampling", counting_work(3, seen), waiting=str))
    assert outputs == ["step 0", "step 1", "step 2"] and seen == [0, 1, 4]
    assert session.job is None and registry.position  # the place is free: the next run starts at once
    assert list(run_job(registry, session, "sampling", counting_work(1, []), waiting=str)) == ["step 0"]


def test_a_queued_job_hears_its_place_then_runs_and_a_full_queue_refuses(registry):
    alice, bob, carol = (registry.session(name) for name in ("alice", "bob", "carol"))
    first = run_job(registry, alice, "sampling", counting_work(5, []), waiting=str)
    assert next(first) == "step 0"  # alice holds the one place
    second = run_job(registry, bob, "sampling", counting_work(2, []), waiting=lambda text: f"waiting: {text}")
    assert "number 1 in the queue" in next(second)
    with pytest.raises(gr.Error, match="server is full"):
        next(run_job(registry, carol, "sampling", counting_work(1, []), waiting=str))
    assert carol.job is None  # a refused user holds nothing
    assert list(first)[-1] == "step 4"  # alice finishes: bob's turn
    assert [text for text in second if not text.startswith("waiting")] == ["step 0", "step 1"]
    assert bob.job is None


def test_stop_while_waiting_ends_before_the_work_starts(registry):
    alice, bob = registry.session("alice"), registry.session("bob")
    first = run_job(registry, alice, "training", counting_work(3, []), waiting=str)
    next(first)
    seen = []
    second = run_job(registry, bob, "training", counting_work(3, seen), waiting=str)
    assert "queue" in next(second)
    assert registry.request_stop(bob)
    assert list(second) == [STOPPED_WHILE_WAITING] and seen == [] and bob.job is None
    first.close()  # the page went away while the generator was suspended: the place is freed
    assert alice.job is None


def test_stop_and_leaving_the_page_both_end_a_running_job(registry):
    for end in ("stop", "leave"):
        session, seen = registry.session(end), []
        run = run_job(registry, session, "sampling", counting_work(100, seen), waiting=str)
        next(run)
        registry.request_stop(session) if end == "stop" else registry.close(end)
        assert list(run) == [] and len(seen) == 1 and session.job is None


def test_expected_errors_become_a_message_and_others_pass_through(registry):
    session = registry.session("alice")

    def failing(error):
        def work(job):
            yield "started"
            raise error

        return work

    with pytest.raises(gr.Error, match="the data is broken"):
        list(run_job(registry, session, "training", failing(ValueError("the data is broken")), waiting=str,
                     expected_errors=(ValueError,)))  # fmt: skip
    assert session.job is None
    with pytest.raises(KeyError):
        list(run_job(registry, session, "training", failing(KeyError("bug")), waiting=str,
                     expected_errors=(ValueError,)))  # fmt: skip
    assert session.job is None


def test_throttled_keeps_the_first_the_spaced_and_the_always_items():
    def slow(n, pause):
        for i in range(n):
            time.sleep(pause)
            yield i

    assert list(throttled(range(100), 10.0)) == [0]
    assert list(throttled(range(100), 10.0, always=lambda i: i == 99)) == [0, 99]
    assert list(throttled(slow(4, 0.02), 0.01)) == [0, 1, 2, 3]


def test_compare_stops_when_the_user_leaves(registry):
    """Compare, like Sample and Train, ends between steps when the user leaves (2 x 1000 DDPM steps here)."""
    tab = SampleTab(registry)
    controls = dict(model=DEFAULT_MODEL, sampler="DDPM", steps=1000, eta=1.0, seed=0, count=4, class_choice=None,
                    guidance=1.0)  # fmt: skip
    run = CompareSection(tab).compare(FakeRequest("alice"), sampler_b="DDPM", steps_b=1000, eta_b=1.0, **controls)
    next(run)
    closer = threading.Timer(0.2, registry.close, args=("alice",))
    closer.start()
    started = time.perf_counter()
    outputs = list(run)
    assert time.perf_counter() - started < 20 and "Stopped" in outputs[-1][0]
    assert "alice" not in registry
