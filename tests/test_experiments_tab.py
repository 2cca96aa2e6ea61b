"""The Experiments tab: runs trained through the API compared and exported through gradio_client, a ready-made
experiment (4 steps a run) run and stopped through its callback, and the view in Chromium."""

from __future__ import annotations

import json
import re
import zipfile

import gradio as gr
import pytest
from gradio_client import Client

from explorer.models import DEFAULT_MODEL
from explorer.sessions import SessionRegistry
from explorer.tabs import experiments
from explorer.tabs.experiments import ExperimentsTab
from explorer.tabs.sample import SampleTab


class FakeRequest:
    def __init__(self, session_hash: str):
        self.session_hash = session_hash


def train(client: Client, schedule: str) -> str:
    status = client.predict(
        "Digits: bundled MNIST (4,000 images, no download)",
        None,
        "tiny (fast: digits in a minute on a CPU)",
        schedule,
        "x0",
        "steps",
        6,
        16,
        2e-3,
        0.99,
        0,
        False,
        api_name="/train",
    )[0]
    assert "Finished" in status
    return status


def test_two_runs_trained_by_api_are_compared_and_exported(app_url):
    client = Client(app_url, verbose=False)
    assert "Kept as **run 1**" in train(client, "linear")
    train(client, "cosine")
    runs = client.predict([], api_name="/list_runs")
    assert runs["value"] == ["run 1", "run 2"]  # none ticked: the last two
    assert [value for _, value in runs["choices"]] == ["run 1", "run 2"] and "linear" in runs["choices"][0][0]
    loss_plot, bucket_plot, grids, table = client.predict(["run 1", "run 2"], api_name="/compare_runs")
    names = [trace["name"] for trace in json.loads(loss_plot["plot"])["data"]]
    assert names == ["linear", "cosine"]  # labelled by what differs
    assert [t["name"] for t in json.loads(bucket_plot["plot"])["data"]] == ["linear", "cosine"]
    assert grids is not None  # one picture: each run's grid under its label
    assert "| **schedule** | **linear** | **cosine** |" in table and "FD (lower is better)" in table
    assert "closest to the real data" in table
    path = client.predict(["run 1", "run 2"], api_name="/export_experiment")
    with zipfile.ZipFile(path) as archive:
        files = set(archive.namelist())
        report = json.loads(archive.read("experiment.json"))
    per_run = {f"run-{i}/{name}" for i in (1, 2) for name in ("grid.png", "samples.npz")}
    assert files == {"experiment.json", "experiment.png", *per_run}
    assert [(r["label"], r["steps"], r["config"]["schedule"]) for r in report["runs"]] == [
        ("linear", 6, "linear"),
        ("cosine", 6, "cosine"),
    ]
    assert all(len(r["loss"]) == 6 and r["metrics"]["kind"] == "digits" for r in report["runs"])


@pytest.fixture
def tab(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "READY_STEPS", 4)
    return ExperimentsTab(SessionRegistry(tmp_path, max_jobs=1, compute_threads=1))


def test_a_ready_made_experiment_trains_its_runs_one_after_the_other(tab):
    outputs = list(tab.run_ready("linear vs cosine", request=FakeRequest("teacher")))
    progress = [o[0] for o in outputs]
    assert any("run 1 of 2** (linear)" in p for p in progress) and any("run 2 of 2** (cosine)" in p for p in progress)
    assert progress[-1].startswith("**linear vs cosine: all 2 runs done.** The linear schedule")
    ticks = [o[1] for o in outputs if isinstance(o[1], gr.CheckboxGroup)][-1]
    assert ticks.value == ["run 1", "run 2"] and "linear vs cosine" in ticks.choices[0][0]
    table = [o[5] for o in outputs if isinstance(o[5], str)][-1]
    assert "| **schedule** | **linear** | **cosine** |" in table
    assert tab.registry.session("teacher").job is None  # its place is freed


def test_stop_ends_a_ready_made_experiment_between_steps(tab, monkeypatch):
    monkeypatch.setattr(experiments, "READY_STEPS", 100_000)  # it would train for an hour: Stop must end it
    request = FakeRequest("teacher")
    run = tab.run_ready("eps vs x0 vs v", request=request)
    first = next(run)
    while "Training" not in first[0]:
        first = next(run)
    assert tab.stop(request) == "Stopping after the current step…"
    last = list(run)[-1]
    assert last[0].startswith("**Stopped** in run 1 of 3")
    assert tab.registry.session("teacher").runs.names() == ["run 1"]


def test_stop_before_the_first_step_keeps_no_run_and_says_so(tab):
    request = FakeRequest("teacher")
    run = tab.run_ready("linear vs cosine", request=request)
    assert "Starting on" in next(run)[0]  # the untrained model's preview, before any step
    tab.stop(request)
    outputs = list(run)
    assert outputs[-1][0].startswith("**Stopped** in run 1 of 2") and outputs[-2][5] == experiments.NOTHING_CHOSEN
    assert tab.registry.session("teacher").runs.names() == []


def test_an_experiment_holds_a_training_place_so_others_still_sample(tab, monkeypatch):
    """One user's experiment is a training job: with one place per kind taken by it, another user samples."""
    monkeypatch.setattr(experiments, "READY_STEPS", 100_000)
    run = tab.run_ready("linear vs cosine", request=FakeRequest("teacher"))
    while "Training" not in next(run)[0]:
        pass
    sampling = SampleTab(tab.registry).sample(
        model=DEFAULT_MODEL, sampler="DDIM", steps=2, eta=0, seed=0, count=1, class_choice=None, guidance=1.0,
        request=FakeRequest("student"),
    )  # fmt: skip
    assert "2 of 2 steps" in list(sampling)[-1][0]
    assert tab.registry.session("teacher").job.kind == "training"
    tab.stop(FakeRequest("teacher"))
    assert list(run)[-1][0].startswith("**Stopped**")


def test_unknown_experiment_and_runs_are_refused(tab):
    with pytest.raises(Exception, match="unknown experiment 'nope'"):
        list(tab.run_ready("nope", request=FakeRequest("x")))
    with pytest.raises(Exception, match="run 9 is not in your run list"):
        tab.compare(["run 9"], request=FakeRequest("x"))
    assert tab.compare([], request=FakeRequest("x"))[3] == experiments.NOTHING_CHOSEN


def test_the_experiments_view_in_chromium(app_url, page, artifacts, monkeypatch):
    """A run stopped in the Train tab appears in the Experiments tab's list; then two short runs (a ready-made
    experiment at 4 steps a run), both chosen: curves, grids and table on one page."""
    monkeypatch.setattr(experiments, "READY_STEPS", 4)  # the server runs in this process
    page.goto(app_url)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-start").click()
    page.locator("#train-status").get_by_text(re.compile(r"Training: step \d")).wait_for(timeout=60_000)
    page.locator("#train-stop").click()
    page.locator("#train-status").get_by_text("Stopped").wait_for(timeout=60_000)
    assert "Kept as run 1 in the Experiments tab" in page.locator("#train-status").inner_text()
    page.get_by_role("tab", name="Experiments").click()
    runs = page.locator("#experiment-runs input[type=checkbox]")
    page.locator("#experiment-runs").get_by_text("run 1: mnist5k").wait_for(timeout=10_000)
    page.locator("#experiment-start").click()
    progress = page.locator("#experiment-progress")
    progress.get_by_text("all 2 runs done").wait_for(timeout=90_000)
    assert runs.count() == 3
    assert [runs.nth(i).is_checked() for i in range(3)] == [False, True, True]  # the experiment's two runs
    runs.nth(1).uncheck()  # choose both again by hand
    page.locator("#experiment-table").get_by_text("run 3:", exact=False).wait_for(timeout=10_000)
    runs.nth(1).check()
    table = page.locator("#experiment-table")
    table.locator("strong", has_text="schedule").wait_for(timeout=10_000)
    assert "cosine" in table.inner_text() and "linear" in table.inner_text()
    assert page.locator("#experiment-grids img").count() == 1
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "experiments.png"), full_page=True)
