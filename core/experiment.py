"""Experiments: train one run per combination of varied settings, each for the same budget, and compare them.

An experiment varies fields of core.training.TrainConfig ("objective=eps,x0", "schedule=linear,cosine"): every
combination becomes a run, and every run is checked (`TrainConfig.validate`) before the first one trains, so a typo
never costs the runs before it. Each run trains, is saved as a checkpoint, draws `n` samples from one fixed x_T with
the sampler settings its checkpoint records, and is scored by core.metrics.score_samples when its data has a
metric. The record of all runs is `experiment.json`; `experiment.png` puts the loss curves on one log axis, the
runs' quality and their sample grids side by side. `python -m core experiment` runs one; the app's Experiments view
reads the same records.

    vary = parse_vary(["objective=eps,x0"])
    runs = plan_runs(TrainConfig(time_budget=30, steps=None), vary)
    report = run_experiment(runs, n=256, out="runs/objectives")   # DIR/<run>/, experiment.json, experiment.png
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from core.charts import draw_line_chart
from core.checkpoint import load_checkpoint
from core.imaging import make_grid, points_to_image, save_images, save_points, to_pil, to_uint8
from core.metrics import has_metric, score_samples
from core.sampler_base import draw_noise
from core.samplers import sample_as_default
from core.training import TrainConfig, Trainer

log = logging.getLogger(__name__)

EXPERIMENT_FILE = "experiment.json"
FIGURE_FILE = "experiment.png"
SAMPLES_FILE = "samples.npz"
MAX_RUNS = 16  # combinations one experiment may train
GRID_IMAGES = 16  # samples shown per run in the figure
# a ready-made experiment's runs: 400 steps each, about 25 s of the live recipe on 2 quiet cores (its "train s"
# column in benchmarks/RESULTS.md "Ready-made experiments"); equal steps keep a comparison fair under load
READY_STEPS = 400
TRUE, FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


def _parse_bool(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise ValueError(f"must be true or false, got {text!r}")


# the TrainConfig fields an experiment may vary, with how a value is read from the command line
VARIABLE_FIELDS: dict[str, Callable[[str], object]] = {
    "schedule": str,
    "num_timesteps": int,
    "beta_start": float,
    "beta_end": float,
    "cosine_s": float,
    "zero_terminal_snr": _parse_bool,
    "objective": str,
    "weighting": str,
    "min_snr_gamma": float,
    "p_uncond": float,
    "preset": str,
    "image_size": int,
    "batch_size": int,
    "lr": float,
    "ema_decay": float,
    "warmup_steps": int,
    "min_lr_ratio": float,
    "grad_clip": float,
    "weight_decay": float,
    "precision": str,
    "seed": int,
}


def parse_vary(specs: Sequence[str]) -> dict[str, list]:
    """`["field=v1,v2", ...]` as {field: [values]} in the given order; ValueError for an unknown field (naming the
    allowed ones), a repeated field, an empty or unreadable value."""
    vary: dict[str, list] = {}
    for spec in specs:
        field, sep, values = spec.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(f"--vary needs FIELD=VALUE[,VALUE...], got {spec!r}")
        if field not in VARIABLE_FIELDS:
            raise ValueError(f"--vary: unknown field {field!r}; choose from {', '.join(VARIABLE_FIELDS)}")
        if field in vary:
            raise ValueError(f"--vary: {field} is given twice; list all its values once: {field}=A,B")
        parsed = []
        for text in (v.strip() for v in values.split(",")):
            try:
                parsed.append(VARIABLE_FIELDS[field](text))
            except ValueError:
                raise ValueError(f"--vary: {field} cannot be {text!r}") from None
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"--vary: {field} lists a value twice: {values!r}")
        vary[field] = parsed
    return vary


@dataclass(frozen=True)
class ReadyExperiment:
    """A ready-made experiment for a lesson: what it varies, on which base, and what to look for."""

    title: str
    vary: dict[str, list]
    look_for: str  # two or three sentences for the class
    base_changes: dict = dataclasses.field(default_factory=dict)

    def runs(self, seconds: float | None = None, *, steps: int = READY_STEPS, **changes: object) -> list[PlannedRun]:
        """Its runs on the TrainConfig defaults with this experiment's base changes, each trained for `steps`
        optimizer steps (the default: every run gets the same updates, however busy the machine is), or for
        `seconds` of wall clock when given."""
        budget = {"time_budget": seconds, "steps": None} if seconds is not None else {"steps": steps}
        base = TrainConfig(**budget, **{**self.base_changes, **changes})
        return plan_runs(base, self.vary)


READY_EXPERIMENTS: dict[str, ReadyExperiment] = {
    experiment.title: experiment
    for experiment in (
        ReadyExperiment(
            "linear vs cosine",
            {"schedule": ["linear", "cosine"]},
            "The linear schedule drowns the picture early: half its steps see almost pure noise. Cosine spreads "
            "the noise evenly over t. Look at the loss by timestep and at the digits after the same number of steps.",
        ),
        ReadyExperiment(
            "eps vs x0 vs v",
            {"objective": ["eps", "x0", "v"]},
            "The same network learns to predict the noise, the clean picture or a mix of both (v). Their losses "
            "are on different scales, so compare the samples and the quality numbers, not the loss curves' heights.",
        ),
        ReadyExperiment(
            "zero terminal SNR off vs on",
            {"zero_terminal_snr": [False, True]},
            "With zero terminal SNR the last step is pure noise, exactly what sampling starts from; without it a "
            "trace of the picture survives at t = T-1 that the model learns to rely on. Compare the samples' "
            "brightness and contrast.",
            {"objective": "v"},
        ),
        ReadyExperiment(
            "T = 1000 vs 100",
            {"num_timesteps": [1000, 100]},
            "Fewer, bigger noising steps: the network sees only 100 noise levels instead of 1000. Both sample with "
            "the same sampler and step count; look whether the coarser ladder of noise levels costs any quality.",
        ),
    )
}


@dataclass(frozen=True)
class PlannedRun:
    """One combination: its name (a folder name), its label (what differs, for legends) and its config."""

    name: str
    label: str
    config: TrainConfig


def value_text(field: str, value: object) -> str:
    """A setting as a legend reads it: a name as itself ("cosine"), others with their field ("num_timesteps 100",
    "zero_terminal_snr on", "steps none")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return f"{field} {'on' if value else 'off'}"
    if value is None:
        return f"{field} none"
    return f"{field} {value:g}" if isinstance(value, float) else f"{field} {value}"


def run_label(changes: dict) -> str:
    """What tells a run apart, e.g. "cosine, x0", from its {field: value} that differ from the other runs'."""
    return ", ".join(value_text(field, value) for field, value in changes.items())


def differing_labels(configs: Sequence[dict]) -> tuple[list[str], list[str]]:
    """The config fields (dicts of TrainConfig fields) whose values are not the same in every config, in field
    order, and each config's label made of its values of those fields (empty labels when all are the same)."""
    fields = [f for f in configs[0] if len({repr(c.get(f)) for c in configs}) > 1] if configs else []
    for config in configs[1:]:
        fields += [f for f in config if f not in configs[0] and f not in fields]
    return fields, [run_label({f: c.get(f) for f in fields}) for c in configs]


def plan_runs(base: TrainConfig, vary: dict[str, list]) -> list[PlannedRun]:
    """Every combination of the varied values on top of `base`, each validated before anything trains (ValueError
    naming the run and what is wrong)."""
    if not vary:
        raise ValueError("an experiment varies at least one field (--vary FIELD=A,B)")
    combinations = list(itertools.product(*vary.values()))
    if len(combinations) > MAX_RUNS:
        raise ValueError(f"{len(combinations)} runs; an experiment trains at most {MAX_RUNS}")
    runs = []
    for values in combinations:
        changes = dict(zip(vary, values, strict=True))
        name = "_".join(f"{field}-{value}" for field, value in changes.items())
        label = run_label(changes)
        config = dataclasses.replace(base, **changes)
        try:
            config.validate()
        except ValueError as error:
            raise ValueError(f"run {name}: {error}") from None
        runs.append(PlannedRun(name, label, config))
    return runs


def draw_from_checkpoint(folder: Path, n: int, seed: int) -> torch.Tensor:
    """n samples from the checkpoint in `folder`, with the sampler settings it records (a class-conditional model:
    each class in turn, with the default guidance), from x_T drawn with `seed` (the same x_T for every run of the
    same shape)."""
    checkpoint = load_checkpoint(folder)
    settings = checkpoint.sampling_defaults
    sampler = settings.sampler_for(checkpoint.schedule, checkpoint.objective)
    generator = torch.Generator().manual_seed(seed)
    x_T = draw_noise((n, *checkpoint.sample_shape), generator, "cpu", torch.float32)
    with torch.no_grad():
        return sample_as_default(
            checkpoint.sampling_model.eval(), sampler, x_T, settings.steps, generator=generator
        ).cpu()


def run_one(run: PlannedRun, n: int, out: Path, seed: int) -> dict:
    """Train, save, sample and score one run; returns its record for experiment.json."""
    folder = out / run.name
    trainer = Trainer(run.config)
    losses: list[float] = []
    buckets: list = []
    seconds = 0.0
    for record in trainer.run():
        losses.append(record.loss)
        buckets, seconds = record.bucket_losses, record.elapsed
    trainer.save(folder, with_training_state=False)
    samples = draw_from_checkpoint(folder, n, seed)
    if samples.ndim == 2:
        save_points(samples, folder / SAMPLES_FILE)
    else:
        save_images(samples, folder / SAMPLES_FILE)
    dataset = run.config.dataset
    metrics = score_samples(samples, dataset) if has_metric(dataset) and n >= 2 else None
    log.info("%s: %d steps, last loss %.4f%s", run.name, trainer.step, losses[-1] if losses else float("nan"),
             f", {metrics['reading']}" if metrics else "")  # fmt: skip
    return {
        "name": run.name,
        "label": run.label,
        "config": dataclasses.asdict(run.config),
        "steps": trainer.step,
        "seconds": seconds,
        "loss": losses,
        "loss_by_timestep": buckets,
        "metrics": metrics,
        "samples": f"{run.name}/{SAMPLES_FILE}",
        "_samples": samples,
    }


def run_experiment(runs: Sequence[PlannedRun], *, n: int, out: str | Path, seed: int = 0) -> dict:
    """Train every run one after the other and write experiment.json and experiment.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = [run_one(run, n, out, seed) for run in runs]
    figure = experiment_figure(records)
    figure.save(out / FIGURE_FILE)
    report = {"runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]}
    (out / EXPERIMENT_FILE).write_text(json.dumps(report, indent=1, default=str))
    return report


def _grid(samples: torch.Tensor) -> Image.Image:
    """The first GRID_IMAGES samples as a grid picture (2D points: a scatter plot)."""
    if samples.ndim == 2:
        return points_to_image(samples, size=256)
    picture = to_pil(make_grid(to_uint8(samples[:GRID_IMAGES]), ncols=4))
    return picture.resize((256, 256 * picture.height // picture.width), Image.NEAREST)


def experiment_figure(records: Sequence[dict]) -> Image.Image:
    """Loss curves overlaid (log y), then each run's sample grid with its label and quality under it."""
    series = {r["label"]: [(i + 1, loss) for i, loss in enumerate(r["loss"]) if loss > 0] for r in records}
    chart = draw_line_chart(
        {k: v[:: max(1, len(v) // 400)] for k, v in series.items() if v},
        title="training loss (log scale) of each run",
        x_label="optimizer step",
    )
    grids = [_grid(r["_samples"]) for r in records]
    cell_w, cell_h = 280, max(g.height for g in grids) + 90
    width = max(chart.width, cell_w * len(records))
    figure = Image.new("RGB", (width, chart.height + cell_h), "white")
    figure.paste(chart, (0, 0))
    draw, font = ImageDraw.Draw(figure), ImageFont.load_default()
    for i, (record, grid) in enumerate(zip(records, grids, strict=True)):
        x, y = i * cell_w + 12, chart.height
        draw.text((x, y + 4), record["label"], fill="black", font=font)
        figure.paste(grid.convert("RGB"), (x, y + 20))
        metrics = record["metrics"]
        if metrics is None:
            text = f"{record['steps']} steps; no metric for this data"
        elif metrics["kind"] == "digits":
            text = f"{record['steps']} steps; FD {metrics['fd']:.0f} (real {metrics['fd_real_floor']:.0f})"
            text += f"\nprecision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}"
        else:
            text = f"{record['steps']} steps; NN {metrics['nn_distance']:.3f} (real {metrics['nn_real_floor']:.3f})"
        draw.multiline_text((x, y + 24 + grid.height), text, fill="black", font=font)
    return figure


def load_samples(out: str | Path, record: dict) -> np.ndarray:
    """A run's samples as written by run_experiment (images uint8 [n, H, W, C] or points float32 [n, D])."""
    with np.load(Path(out) / record["samples"]) as data:
        return data[data.files[0]]
