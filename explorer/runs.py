"""A user's finished training runs, kept for the Experiments tab: the run record and the per-user run list.

Every training run that ends (finished, stopped or diverged, with at least one step) becomes a `RunRecord`: its
config, its loss per step, its loss by timestep bucket, RUN_SAMPLES samples of the EMA model drawn with the Train
tab's preview sampler (explorer.training_run.Preview) from one fixed x_T (the noise of RUN_SEED, the same for every
run, so that the grids of two runs differ only by what the runs learned), and their quality numbers
(core.metrics.score_samples; None for data without a metric). `record_run` draws and scores on the compute worker;
how long that takes per U-Net preset: benchmarks/RESULTS.md "Keeping a run for the Experiments tab". A user's
`RunList` keeps at most MAX_RUNS records (the oldest leaves with a note) and is emptied when their session closes
(explorer.sessions), so memory stays bounded: a record is about 0.5 MB (its samples).

`export_experiment` writes chosen records as a zip in core/experiment.py's format: experiment.json, experiment.png
(core.experiment.experiment_figure), each run's samples.npz and grid.png.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from core.experiment import EXPERIMENT_FILE, FIGURE_FILE, SAMPLES_FILE, differing_labels, experiment_figure
from core.imaging import save_images, save_points
from core.metrics import has_metric, score_samples
from core.training import TrainConfig
from explorer.training_run import PREVIEW_IMAGES, LiveUpdate, Preview

MAX_RUNS = 6  # runs a user keeps
RUN_SAMPLES = 100  # images drawn per run (core.metrics.MIN_FINE_N: the digit metrics read finely from 100)
RUN_POINTS = 1000  # points drawn per run of a 2D set
RUN_SEED = 0  # the noise x_T of every run's samples
GRID_FILE = "grid.png"


@dataclass(frozen=True, eq=False)
class RunRecord:
    """One finished training run, as the Experiments tab compares it."""

    name: str  # "run 3": the user's run number, unique in their list
    title: str  # what the run list shows: name, data, schedule, objective, steps
    config: TrainConfig
    state: str  # "finished", "stopped" or "diverged"
    steps: int
    seconds: float
    losses: np.ndarray  # float32 [steps]: the loss of every step
    smoothed: np.ndarray  # float32 [steps]: its running average
    bucket_losses: list[float | None]  # the recent loss per tenth of the timesteps
    samples: Tensor  # float32 [n, C, H, W] in [-1, 1], or [n, 2] points: the EMA model from x_T of RUN_SEED
    picture: np.ndarray  # uint8: the first PREVIEW_IMAGES samples as a grid (2D: all points over the data)
    metrics: dict | None  # core.metrics.score_samples, or None for data without a metric

    def to_json(self, label: str, folder: str) -> dict:
        """The record as core/experiment.py's experiment.json writes a run (`folder`: where its files are)."""
        return {
            "name": folder,
            "label": label,
            "config": dataclasses.asdict(self.config),
            "steps": self.steps,
            "seconds": self.seconds,
            "loss": [float(v) for v in self.losses],
            "loss_by_timestep": self.bucket_losses,
            "metrics": self.metrics,
            "samples": f"{folder}/{SAMPLES_FILE}",
            "state": self.state,
        }


class RunList:
    """A user's runs, oldest first, at most `limit`; thread-safe; `close()` empties it for good."""

    def __init__(self, limit: int = MAX_RUNS) -> None:
        self.limit = limit
        self._runs: list[RunRecord] = []
        self._count = 0
        self._closed = False
        self._lock = threading.Lock()

    def new_name(self) -> str:
        """The next run's name: "run 1", "run 2", ... (never reused, so a name always means one run)."""
        with self._lock:
            self._count += 1
            return f"run {self._count}"

    def add(self, record: RunRecord) -> str:
        """Keep `record`; returns a note when the oldest run had to leave (else ""). Ignored once closed."""
        with self._lock:
            if self._closed:
                return ""
            self._runs.append(record)
            gone = [self._runs.pop(0).name for _ in range(len(self._runs) - self.limit)]
        if not gone:
            return ""
        return f"{', '.join(gone)} left your run list (it keeps the last {self.limit} runs)."

    def records(self) -> list[RunRecord]:
        with self._lock:
            return list(self._runs)

    def names(self) -> list[str]:
        return [record.name for record in self.records()]

    def get(self, names: Sequence[str]) -> list[RunRecord]:
        """The records of `names`, oldest first (whatever order they were ticked in); ValueError naming one that is
        not (or no longer) kept."""
        records = self.records()
        missing = [name for name in names if name not in {record.name for record in records}]
        if missing:
            raise ValueError(f"{missing[0]} is not in your run list (it keeps the last {self.limit} runs)")
        return [record for record in records if record.name in names]

    def close(self) -> None:
        """The session closed: drop every record, and keep none added later."""
        with self._lock:
            self._closed = True
            self._runs.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)


def _draw_and_score(update: LiveUpdate) -> tuple[Tensor, np.ndarray, dict | None]:
    trainer = update.trainer
    points = trainer.data.kind == "points"
    preview = Preview(trainer, RUN_POINTS if points else RUN_SAMPLES, RUN_SEED)
    samples = preview.samples()
    picture = preview.picture(samples if points else samples[:PREVIEW_IMAGES])
    metrics = score_samples(samples, trainer.config.dataset) if has_metric(trainer.config.dataset) else None
    return samples, picture, metrics


def record_run(
    runs: RunList, update: LiveUpdate, compute: Callable[[Callable[[], Any]], Any], tag: str = ""
) -> tuple[RunRecord | None, str]:
    """Keep a finished (or stopped) run in `runs`: draw its samples and score them through `compute` (the compute
    worker's lane). Returns the record (None when no step was taken) and a note for the page. `tag` goes in front
    of the run's title (a ready-made experiment's name)."""
    trainer = update.trainer
    if update.kept_steps == 0:
        return None, ""
    samples, picture, metrics = compute(lambda: _draw_and_score(update))
    config, history = trainer.config, update.history
    name = runs.new_name()
    quality = f", {metrics['reading']}" if metrics else ""
    title = f"{name}: {tag + ' · ' if tag else ''}{config.dataset}, {config.schedule}, {config.objective}"
    record = RunRecord(
        name=name,
        title=f"{title}, T {config.num_timesteps}, {trainer.step:,} steps{quality}",
        config=config,
        state=update.state,
        steps=trainer.step,
        seconds=history.last.elapsed if history.last else 0.0,
        losses=np.asarray(history.losses, dtype=np.float32),
        smoothed=np.asarray(history.smoothed, dtype=np.float32),
        bucket_losses=list(history.last.bucket_losses) if history.last else [],
        samples=samples,
        picture=picture,
        metrics=metrics,
    )
    note = runs.add(record)
    return record, f"Kept as **{name}** in the Experiments tab. {note}".rstrip()


def run_labels(records: Sequence[RunRecord]) -> tuple[list[str], list[str]]:
    """The config fields that differ between the runs, and each run's label from them ("cosine" / "linear");
    a label that would be empty is the run's name, one that two runs share gets the name added ("cosine, run 3")."""
    fields, labels = differing_labels([dataclasses.asdict(record.config) for record in records])
    return fields, [
        record.name if not label else f"{label}, {record.name}" if labels.count(label) > 1 else label
        for label, record in zip(labels, records, strict=True)
    ]


def export_experiment(records: Sequence[RunRecord], path: Path) -> Path:
    """Write the runs as a zip at `path`: experiment.json (core/experiment.py's format), experiment.png, and per
    run `<run>/samples.npz` and `<run>/grid.png`."""
    _, labels = run_labels(records)
    folders = [record.name.replace(" ", "-") for record in records]
    figure = experiment_figure(
        [{**r.to_json(label, f), "_samples": r.samples} for r, label, f in zip(records, labels, folders, strict=True)]
    )
    report = {"runs": [r.to_json(label, f) for r, label, f in zip(records, labels, folders, strict=True)]}
    work = path.parent / "files"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(EXPERIMENT_FILE, json.dumps(report, indent=1, default=str))
        for record, folder in zip(records, folders, strict=True):
            (work / folder).mkdir(parents=True, exist_ok=True)
            save = save_points if record.samples.ndim == 2 else save_images
            archive.write(save(record.samples, work / folder / SAMPLES_FILE), f"{folder}/{SAMPLES_FILE}")
            Image.fromarray(record.picture).save(work / folder / GRID_FILE)
            archive.write(work / folder / GRID_FILE, f"{folder}/{GRID_FILE}")
        figure.save(work / FIGURE_FILE)
        archive.write(work / FIGURE_FILE, FIGURE_FILE)
    return path
