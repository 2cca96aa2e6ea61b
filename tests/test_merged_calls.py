"""explorer/merged_calls.py: concurrent sampling runs of one model share each network call, and every run still gets
exactly what it gets alone; explorer/shared_runs.py: identical requests share one run.

"The same run alone" is the run through the same compute worker with no other run beside it (so the thread count is
the same). Merged, a run's final sample equals it to float rounding: the convolution kernels may split a larger
batch differently among threads and sum in another order, and which calls share a batch depends on timing. Measured
on this machine (2 threads, 12 repetitions of the first test): the largest difference 1.3e-5 on samples in [-1, 1]
(most runs 2.5e-6 to 6e-6); the tests allow `TOLERANCE` = 1e-4."""

import threading

import pytest
import torch

from explorer.merged_calls import MergedCalls, MergedModel
from explorer.models import DEFAULT_MODEL, PRETRAINED, pretrained
from explorer.sampling_run import EACH_CLASS, check_request, sample_request
from explorer.sessions import JobRefused, SessionRegistry
from explorer.shared_runs import SharedRuns
from explorer.tabs.sample import sharing_key

TOLERANCE = 1e-4  # float32 rounding of a convolution summed in another order, through 10 sampler steps


def final_sample(entry, request, **options):
    *_, (_, trajectory) = sample_request(entry, request, **options)
    assert trajectory.complete
    return trajectory.final


def run_together(entry, requests, merged):
    """Each request in its own thread (as Gradio runs them), all at once; their final samples."""
    finals = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def one(i):
        start.wait()
        finals[i] = final_sample(entry, requests[i], merged=merged)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(final is not None for final in finals)
    return finals


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(tmp_path / "sessions", compute_threads=2)


def test_merged_runs_equal_each_run_alone(registry, one_torch_thread):
    entry = pretrained(DEFAULT_MODEL)
    requests = [check_request(entry, "DPM++ 2M SDE", 10, 0.0, seed, 16, spacing="trailing") for seed in range(4)]
    requests.append(check_request(entry, "DDIM", 6, 1.0, 7, 5, spacing="leading"))  # another sampler, same model
    alone = [final_sample(entry, request, merged=registry.merged_calls) for request in requests]  # one at a time
    assert registry.merged_calls.stats.widest == 16
    merged = run_together(entry, requests, registry.merged_calls)
    for mine, reference in zip(merged, alone, strict=True):
        torch.testing.assert_close(mine, reference, atol=TOLERANCE, rtol=0)
    stats = registry.merged_calls.stats
    assert stats.widest > 16, "the runs were never merged"
    assert stats.flushes < stats.calls, stats


def test_conditional_runs_keep_their_own_labels_and_guidance(registry, one_torch_thread):
    entry = pretrained(PRETRAINED["mnist_cond"])
    requests = [
        check_request(entry, "DDIM", 5, 0.0, 1, 10, label=3, guidance=2.0),
        check_request(entry, "DDIM", 5, 0.0, 2, 10, label=EACH_CLASS, guidance=4.0),
        check_request(entry, "Euler", 5, 0.0, 3, 6, label=7, guidance=1.0),
    ]
    alone = [final_sample(entry, request, merged=registry.merged_calls) for request in requests]
    merged = run_together(entry, requests, registry.merged_calls)
    for mine, reference in zip(merged, alone, strict=True):
        torch.testing.assert_close(mine, reference, atol=TOLERANCE, rtol=0)
    assert registry.merged_calls.stats.widest > 20


def test_an_error_in_a_merged_call_reaches_every_run_and_the_next_calls_work(registry):
    class Fails(torch.nn.Module):
        def forward(self, x, t, y=None):
            if bool((x > 100).any()):
                raise RuntimeError("out of memory (pretend)")
            return x * 2

    model, merged = Fails(), registry.merged_calls
    with merged.joined(model) as network:
        assert isinstance(network, MergedModel) and network.num_classes is None
        with pytest.raises(RuntimeError, match="pretend"):
            network(torch.full((2, 3), 1000.0), torch.zeros(2, dtype=torch.long))
        assert torch.equal(network(torch.ones(2, 3), torch.zeros(2, dtype=torch.long)), torch.full((2, 3), 2.0))


def test_a_flush_waits_only_for_open_runs_and_splits_beyond_max_batch(registry):
    calls = []

    class Records(torch.nn.Module):
        def forward(self, x, t, y=None):
            calls.append(len(x))
            return x + t.view(-1, 1)

    merged = MergedCalls(registry.merged_calls._submit, gather=5.0, max_batch=4)
    model = Records()
    with merged.joined(model) as network:  # alone: no wait for anybody (the 5-s gather would show)
        out = network(torch.zeros(3, 2), torch.arange(3))
    assert torch.equal(out, torch.arange(3.0).view(-1, 1).expand(3, 2)) and calls == [3]
    results, both_open = [None, None], threading.Barrier(2)

    def one(i):
        with merged.joined(model) as network:
            both_open.wait()
            results[i] = network(torch.full((3, 2), float(i)), torch.full((3,), 10 * i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert calls[1:] == [3, 3]  # 6 rows > max_batch 4: two calls, each run's rows whole
    assert torch.equal(results[1], torch.full((3, 2), 11.0))


def test_identical_requests_share_one_run_and_a_finished_one_is_served_from_the_cache():
    runs = SharedRuns(cache_runs=1)
    started = []

    def start(tag):
        def frames():
            started.append(tag)
            yield from range(5)

        return frames

    first, second = runs.follow("k", start("a")), runs.follow("k", start("b"))
    assert next(first) == 0 and next(second) == 0  # b joined a's run
    assert list(first) == [1, 2, 3, 4] and list(second) == [4]  # a follower sees the newest frame
    assert started == ["a"]
    assert list(runs.follow("k", start("c"))) == [4]  # finished: from the cache, nothing computed
    assert list(runs.follow(None, start("d"))) == [0, 1, 2, 3, 4]  # never shared
    assert list(runs.follow("other", start("e")))[-1] == 4  # pushes "k" out of a one-run cache
    assert list(runs.follow("k", start("f"))) == [0, 1, 2, 3, 4] and started == ["a", "d", "e", "f"]


def test_a_shared_run_goes_on_while_anyone_follows_and_ends_when_the_last_leaves():
    runs = SharedRuns()
    ended = []

    def frames():
        try:
            yield from range(100)
        finally:
            ended.append(True)

    stopped = threading.Event()
    quitter, stayer = runs.follow("k", frames, stop=stopped.is_set), runs.follow("k", frames)
    assert next(quitter) == 0 and next(stayer) == 0
    stopped.set()  # the first user pressed Stop
    assert list(quitter) == [] and not ended
    assert next(stayer) == 1  # the other goes on, and now advances the run itself
    stayer.close()  # the page went away
    assert ended == [True]
    assert runs.follow("k", frames).__next__() == 0  # a stopped run is not cached: a new one starts


def test_a_failing_run_raises_for_every_follower_and_is_not_cached():
    runs = SharedRuns()

    def frames():
        yield 1
        raise ValueError("bad class")

    with pytest.raises(ValueError, match="bad class"):
        list(runs.follow("k", frames))
    assert list(runs.follow("k", lambda: iter([7]))) == [7]


def test_only_shipped_models_are_shared(tmp_path):
    entry = pretrained(DEFAULT_MODEL)
    request = check_request(entry, "DDIM", 5, 0.0, 0, 4)
    assert sharing_key(entry, request) == (entry.name, request)
    assert sharing_key(entry, request) == sharing_key(entry, check_request(entry, "DDIM", 5, 0.0, 0, 4))
    assert sharing_key(entry, request) != sharing_key(entry, check_request(entry, "DDIM", 5, 0.0, 1, 4))
    own = type(entry)("my model", entry.checkpoint)  # a user's own model: no precomputed sweep, not shipped
    assert sharing_key(own, request) is None


def test_a_class_of_thirty_is_admitted_at_once_and_a_limit_still_answers(tmp_path):
    registry = SessionRegistry(tmp_path / "s", compute_threads=1)
    tickets = [registry.enter_queue(registry.session(f"student {i}"), "sampling") for i in range(30)]
    assert all(registry.position(ticket) == 0 for ticket in tickets)
    more = [registry.enter_queue(registry.session(f"late {i}"), "sampling") for i in range(34)]
    assert [registry.position(ticket) for ticket in more[-3:]] == [30, 31, 32]
    with pytest.raises(JobRefused, match="server is full: 32 sampling runs are going and 32 are waiting"):
        registry.enter_queue(registry.session("one too many"), "sampling")
    assert registry.max_jobs["training"] == 2 and registry.max_waiting["training"] == 8


def test_sampling_places_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_EXPLORER_MAX_SAMPLING_JOBS", "5")
    monkeypatch.setenv("DDPM_EXPLORER_MAX_SAMPLING_WAITING", "0")
    registry = SessionRegistry(tmp_path / "s", compute_threads=1)
    assert registry.max_jobs == {"training": 2, "sampling": 5} and registry.max_waiting["sampling"] == 0
    monkeypatch.setenv("DDPM_EXPLORER_MAX_SAMPLING_JOBS", "0")
    with pytest.raises(ValueError, match="DDPM_EXPLORER_MAX_SAMPLING_JOBS must be a whole number >= 1"):
        SessionRegistry(tmp_path / "t", compute_threads=1)
    monkeypatch.delenv("DDPM_EXPLORER_MAX_SAMPLING_JOBS")
    assert SessionRegistry(tmp_path / "u", max_jobs={"training": 1}, max_waiting=3).max_waiting == {
        "training": 3,
        "sampling": 3,
    }
