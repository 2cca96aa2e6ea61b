"""The per-user run list (explorer/runs.py): records of finished runs, its limit and its freeing, the labels made of
what differs between runs, and the experiment zip."""

from __future__ import annotations

import dataclasses
import json
import time
import zipfile

import numpy as np
import pytest
import torch

from core.experiment import differing_labels, run_label
from core.training import TrainConfig
from explorer.experiment_figures import LABEL_HEIGHT, comparison_markdown, labelled_grids, plain_reading
from explorer.runs import MAX_RUNS, RUN_SAMPLES, RunList, RunRecord, export_experiment, record_run, run_labels
from explorer.sessions import SessionRegistry
from explorer.training_run import train_live


def fake_record(runs: RunList, **config: object) -> RunRecord:
    """A small record without training (4 steps, 4 blank 8x8 pictures)."""
    return RunRecord(
        name=runs.new_name(),
        title="fake",
        config=TrainConfig(steps=4, **config),
        state="finished",
        steps=4,
        seconds=0.1,
        losses=np.linspace(1, 0.5, 4, dtype=np.float32),
        smoothed=np.linspace(1, 0.6, 4, dtype=np.float32),
        bucket_losses=[0.5] * 9 + [None],
        samples=torch.zeros(4, 1, 8, 8),
        picture=np.zeros((18, 18), dtype=np.uint8),
        metrics=None,
    )


def test_a_seventh_run_pushes_out_the_oldest_with_a_note():
    runs = RunList()
    notes = [runs.add(fake_record(runs)) for _ in range(MAX_RUNS)]
    assert notes == [""] * MAX_RUNS and len(runs) == MAX_RUNS
    note = runs.add(fake_record(runs))
    assert note == f"run 1 left your run list (it keeps the last {MAX_RUNS} runs)."
    assert runs.names() == [f"run {i}" for i in range(2, MAX_RUNS + 2)]
    with pytest.raises(ValueError, match="run 1 is not in your run list"):
        runs.get(["run 2", "run 1"])
    assert [r.name for r in runs.get(["run 3", "run 2"])] == ["run 2", "run 3"]  # oldest first


def test_closing_the_session_frees_its_runs_and_keeps_none_added_later(tmp_path):
    registry = SessionRegistry(tmp_path)
    session = registry.session("someone")
    session.runs.add(fake_record(session.runs))
    record = fake_record(session.runs)
    registry.close("someone")
    assert len(session.runs) == 0
    assert session.runs.add(record) == "" and len(session.runs) == 0  # a run ending after the user left
    assert len(registry.session("other").runs) == 0  # each user has a list of their own


def test_labels_name_only_what_differs():
    base = TrainConfig()
    cosine, linear = (vars(TrainConfig(schedule=name, objective="x0")) for name in ("cosine", "linear"))
    assert differing_labels([cosine, linear]) == (["schedule"], ["cosine", "linear"])
    configs = [vars(base), vars(TrainConfig(num_timesteps=100, zero_terminal_snr=True, objective="v"))]
    fields, labels = differing_labels(configs)
    assert fields == ["num_timesteps", "zero_terminal_snr", "objective"]  # in TrainConfig's order
    assert labels == ["num_timesteps 1000, zero_terminal_snr off, x0", "num_timesteps 100, zero_terminal_snr on, v"]
    assert differing_labels([vars(base), vars(base)]) == ([], ["", ""])
    assert run_label({"lr": 0.002, "steps": None}) == "lr 0.002, steps none"
    runs = RunList()
    same = [fake_record(runs), fake_record(runs)]
    assert run_labels(same) == ([], ["run 1", "run 2"])  # nothing differs: the run's name
    linear = fake_record(runs, schedule="linear")
    assert run_labels([*same, linear]) == (["schedule"], ["cosine, run 1", "cosine, run 2", "linear"])


@pytest.mark.usefixtures("one_torch_thread")  # two threads beside other busy processes spin for seconds
def test_a_finished_run_is_recorded_with_samples_from_one_fixed_noise_and_its_quality(tmp_path):
    config = TrainConfig(steps=3, batch_size=8, objective="x0", num_threads=1)
    runs = RunList()
    timings = []
    *_, last = train_live(config, preview_interval=1e9)
    for _ in range(2):
        start = time.perf_counter()
        _, note = record_run(runs, last, lambda fn: fn())
        timings.append(time.perf_counter() - start)
    first, second = runs.records()
    assert note == "Kept as **run 2** in the Experiments tab."
    assert first.samples.shape == (RUN_SAMPLES, 1, 28, 28) and first.steps == 3 and len(first.losses) == 3
    assert torch.equal(first.samples, second.samples)  # same seed, same config: the same samples
    assert first.metrics["kind"] == "digits" and first.metrics["n"] == RUN_SAMPLES
    assert len(first.bucket_losses) == config.num_buckets and first.picture.dtype == np.uint8
    assert min(timings) < 6.0, timings  # drawing 100 samples and scoring them: 0.5 s on 2 quiet cores
    path = export_experiment([first, second], tmp_path / "experiment.zip")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        report = json.loads(archive.read("experiment.json"))
    assert names == {
        "experiment.json",
        "experiment.png",
        *(f"run-{i}/{f}" for i in (1, 2) for f in ("samples.npz", "grid.png")),
    }
    assert [r["label"] for r in report["runs"]] == ["run 1", "run 2"]
    assert report["runs"][0]["samples"] == "run-1/samples.npz" and len(report["runs"][0]["loss"]) == 3


def digit_scores(fd: float) -> dict:
    return {
        "kind": "digits", "fd": fd, "fd_real_floor": 80.0, "precision": 0.5, "precision_real_floor": 0.9,
        "recall": 0.4, "recall_real_floor": 0.9, "confident_fraction": 0.6, "reading": "digits",
    }  # fmt: skip


def test_the_table_bolds_what_differs_and_the_reading_names_the_best_run():
    runs = RunList()
    linear, cosine = (fake_record(runs, schedule=name) for name in ("linear", "cosine"))
    linear, cosine = (dataclasses.replace(r, metrics=digit_scores(fd)) for r, fd in ((linear, 300.0), (cosine, 150.0)))
    fields, labels = run_labels([linear, cosine])
    table = comparison_markdown([linear, cosine], labels, fields)
    assert table.startswith("**cosine** is closest to the real data: FD 150.0 against 300.0 for **linear**")
    assert "| **schedule** | **linear** | **cosine** |" in table and "| objective | x0 | x0 |" in table
    assert "| FD (lower is better) | 300.0 (80.0) | 150.0 (80.0) |" in table
    moons = fake_record(runs, dataset="moons")
    assert plain_reading([linear, moons], ["a", "b"]).startswith("These runs learned different data (mnist5k, moons)")
    assert plain_reading([fake_record(runs)] * 2, ["a", "b"]).startswith("These runs' data has no quality metric")
    grids = labelled_grids([linear.picture, cosine.picture], labels)
    assert grids.dtype == np.uint8 and grids.shape[0] == 18 + LABEL_HEIGHT
