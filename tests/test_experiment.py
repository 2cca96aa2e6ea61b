"""core/experiment.py and `python -m core experiment`: --vary parsing and its refusals before any training, one run
per combination with its checkpoint, samples, loss and metrics, and the experiment's JSON and figure."""

import json

import numpy as np
import pytest
from PIL import Image

from core.checkpoint import load_checkpoint
from core.cli import main
from core.experiment import (
    FIGURE_FILE,
    MAX_RUNS,
    READY_EXPERIMENTS,
    READY_STEPS,
    load_samples,
    parse_vary,
    plan_runs,
    run_experiment,
)
from core.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_vary_reads_each_field_by_its_type():
    vary = parse_vary(["objective=eps,x0", "num-timesteps=1000,100", "zero_terminal_snr=off,on", "lr=1e-3"])
    assert vary == {"objective": ["eps", "x0"], "num_timesteps": [1000, 100], "zero_terminal_snr": [False, True],
                    "lr": [1e-3]}  # fmt: skip


@pytest.mark.parametrize(
    "specs, message",
    [
        (["colour=red"], "unknown field 'colour'; choose from schedule, num_timesteps"),
        (["objective"], "needs FIELD=VALUE"),
        (["objective="], "needs FIELD=VALUE"),
        (["num_timesteps=ten"], "num_timesteps cannot be 'ten'"),
        (["zero_terminal_snr=maybe"], "zero_terminal_snr cannot be 'maybe'"),
        (["objective=eps", "objective=x0"], "objective is given twice"),
        (["objective=eps,eps"], "lists a value twice"),
    ],
)
def test_bad_vary_values_are_refused_naming_what_is_allowed(specs, message):
    with pytest.raises(ValueError, match=message):
        parse_vary(specs)


def test_every_run_is_checked_before_any_trains():
    base = TrainConfig(steps=2)
    with pytest.raises(ValueError, match="run objective-eps_zero_terminal_snr-True: eps prediction cannot"):
        plan_runs(base, parse_vary(["objective=x0,eps", "zero_terminal_snr=false,true"]))
    with pytest.raises(ValueError, match="unknown schedule 'wavy'"):
        plan_runs(base, parse_vary(["schedule=cosine,wavy"]))
    with pytest.raises(ValueError, match=f"at most {MAX_RUNS}"):
        plan_runs(base, parse_vary(["seed=" + ",".join(str(s) for s in range(MAX_RUNS + 1))]))
    runs = plan_runs(base, parse_vary(["schedule=linear,cosine", "objective=eps,x0"]))
    assert [r.name for r in runs] == [
        "schedule-linear_objective-eps", "schedule-linear_objective-x0",
        "schedule-cosine_objective-eps", "schedule-cosine_objective-x0",
    ]  # fmt: skip
    assert runs[0].label == "linear, eps" and runs[0].config.schedule == "linear" and runs[0].config.steps == 2


def test_an_experiment_writes_each_run_and_the_comparison(tmp_path):
    base = TrainConfig(dataset="moons", objective="eps", steps=20, batch_size=64, lr=3e-3)
    runs = plan_runs(base, parse_vary(["num_timesteps=1000,100"]))
    report = run_experiment(runs, n=64, out=tmp_path)
    on_disk = json.loads((tmp_path / "experiment.json").read_text())
    assert on_disk == report and [r["name"] for r in on_disk["runs"]] == ["num_timesteps-1000", "num_timesteps-100"]
    for run, T in zip(on_disk["runs"], (1000, 100), strict=True):
        assert run["steps"] == 20 and len(run["loss"]) == 20 and run["config"]["num_timesteps"] == T
        assert load_checkpoint(tmp_path / run["name"]).schedule.num_timesteps == T  # the run's own schedule
        assert load_samples(tmp_path, run).shape == (64, 2)
        metrics = run["metrics"]
        assert metrics["kind"] == "points" and metrics["n"] == 64 and metrics["reading"]
    a, b = (load_samples(tmp_path, run) for run in on_disk["runs"])
    assert not np.array_equal(a, b)  # two models, though both start from the same x_T
    assert Image.open(tmp_path / FIGURE_FILE).size[1] > 500


def test_the_command_line_runs_an_experiment_and_refuses_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "--vary", "objective=eps,x1", "--steps", "2", "--out", str(tmp_path / "bad")])
    assert "unknown objective 'x1'" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    out = tmp_path / "digits"
    argv = ["experiment", "--vary", "objective=eps,x0", "--steps", "3", "--batch-size", "8", "--n", "8"]
    assert main([*argv, "--out", str(out)]) == 0
    runs = json.loads((out / "experiment.json").read_text())["runs"]
    assert [r["label"] for r in runs] == ["eps", "x0"] and all(r["metrics"]["kind"] == "digits" for r in runs)
    assert load_samples(out, runs[0]).shape == (8, 28, 28, 1)
    assert "wrote" in capsys.readouterr().err


def test_the_four_ready_made_experiments_plan_valid_runs():
    assert list(READY_EXPERIMENTS) == [
        "linear vs cosine",
        "eps vs x0 vs v",
        "zero terminal SNR off vs on",
        "T = 1000 vs 100",
    ]
    for experiment in READY_EXPERIMENTS.values():
        runs = experiment.runs(seconds=25)
        assert len(runs) in (2, 3) and all(run.config.time_budget == 25 and run.config.steps is None for run in runs)
        assert all(run.config.steps == READY_STEPS and run.config.time_budget is None for run in experiment.runs())
        assert len(experiment.look_for.split(". ")) >= 2  # a few sentences for the class
    zero_snr = READY_EXPERIMENTS["zero terminal SNR off vs on"].runs()
    assert [run.config.zero_terminal_snr for run in zero_snr] == [False, True]
    assert all(run.config.objective == "v" for run in zero_snr)  # eps cannot sample from zero terminal SNR
