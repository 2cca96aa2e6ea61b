"""Sample quality against network calls: each sampler at a few call counts, from one x_T, scored by core.metrics.

`sweep` draws n samples per (sampler, spacing, calls) from the noise of each seed and scores them with
`core.metrics.score_samples` on the chosen splits of the held-out digits (or the 2D toy set's points). The
benchmark (benchmarks/sampler_quality.py) runs it on the shipped models and writes its report-split points next to
each checkpoint (QUALITY_FILE), which the Sample tab's "quality vs network calls" chart reads; for a user's own
model the tab runs a smaller sweep on request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from core.checkpoint import Checkpoint
from core.metrics import score_samples
from core.sampler_base import draw_noise
from core.samplers import SAMPLERS, each_class, make_sampler, sample

QUALITY_FILE = "sampler_quality.json"  # a checkpoint folder's precomputed sweep (report split)


@dataclass(frozen=True)
class SamplerChoice:
    """A sampler with its settings, as a sweep runs it."""

    name: str  # a key of core.samplers.SAMPLERS
    eta: float = 0.0  # DDIM only
    spacing: str = "karras"

    @property
    def label(self) -> str:
        """e.g. "dpmpp_2m, karras" or "ddim eta 1, trailing"."""
        eta = f" eta {self.eta:g}" if self.name == "ddim" else ""
        return f"{self.name}{eta}, {self.spacing}"

    def steps_for(self, calls: int) -> int:
        """Sampler steps for about `calls` network calls (Heun makes 2 steps - 1)."""
        return max(1, (calls + 1) // 2) if self.name == "heun" else calls

    def calls_for(self, steps: int) -> int:
        return SAMPLERS[self.name].network_calls(steps)


SWEEP_SAMPLERS: tuple[SamplerChoice, ...] = (
    SamplerChoice("ddim"),
    SamplerChoice("ddim", eta=1.0),
    SamplerChoice("euler"),
    SamplerChoice("euler_ancestral"),
    SamplerChoice("heun"),
    SamplerChoice("dpmpp_2m"),
    SamplerChoice("dpmpp_2m_sde"),
)
SWEEP_CALLS: tuple[int, ...] = (5, 10, 20, 50)
REFERENCE = SamplerChoice("ddpm", spacing="leading")  # DDPM with every timestep: the quality to approach


@dataclass
class SweepPoint:
    """One sampler at one call count, for one seed."""

    label: str  # SamplerChoice.label
    sampler: str
    eta: float
    spacing: str
    steps: int
    calls: int
    seed: int
    seconds: float  # wall time of the sampling (network and sampler), not of the scoring
    metrics: dict[str, dict] = field(default_factory=dict)  # split ("report", "tune"; "points") -> scores


def draw(
    checkpoint: Checkpoint,
    model: nn.Module,
    choice: SamplerChoice,
    steps: int,
    x_T: Tensor,
    seed: int,
    labels: Tensor | None = None,
) -> tuple[Tensor, float]:
    """Samples of `choice` with `steps` steps from x_T (x_0 clipped to [-1, 1]) and the seconds they took."""
    sampler = make_sampler(
        choice.name,
        checkpoint.schedule,
        eta=choice.eta,
        objective=checkpoint.objective,
        clip_x0=True,
        spacing=choice.spacing,
    )
    start = time.perf_counter()
    samples = sample(model, sampler, x_T, steps, y=labels, generator=torch.Generator().manual_seed(seed + 1))
    return samples.float().cpu(), time.perf_counter() - start


def sweep(
    checkpoint: Checkpoint,
    plan: Sequence[tuple[SamplerChoice, int]],
    *,
    n: int,
    seeds: Sequence[int] = (0,),
    splits: Sequence[str] = ("report",),
    model: nn.Module | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[SweepPoint]:
    """For each seed and each (choice, steps) of the plan: n samples from that seed's x_T, timed and scored.
    A class-conditional model is asked for the labels 0, 1, ..., 9, 0, ... (guidance 1)."""
    model = (model or checkpoint.sampling_model).eval()
    dataset = checkpoint.dataset_name
    num_classes = getattr(model, "num_classes", None)
    device = next(model.parameters()).device  # x_T is drawn on the CPU (the same on any device), then moved
    labels = each_class(num_classes, n, device)
    for seed in seeds:
        x_T = draw_noise((n, *checkpoint.sample_shape), torch.Generator().manual_seed(seed), device, torch.float32)
        for choice, steps in plan:
            if stop is not None and stop():
                return
            samples, seconds = draw(checkpoint, model, choice, steps, x_T, seed, labels)
            point = SweepPoint(
                choice.label, choice.name, choice.eta, choice.spacing, steps, choice.calls_for(steps), seed, seconds
            )
            points = samples.ndim == 2
            for split in ("points",) if points else splits:
                point.metrics[split] = score_samples(samples, dataset, seed=seed, split="report" if points else split)
            yield point


def quality_value(metrics: dict) -> float:
    """The number a quality chart plots: FD for digits, sliced Wasserstein-2 distance for 2D points."""
    return float(metrics["fd"] if metrics["kind"] == "digits" else metrics["sliced_wasserstein"])


def write_quality(points: Sequence[SweepPoint], path: Path) -> Path:
    """The sweep's points as JSON (what `read_quality` reads)."""
    path.write_text(json.dumps({"points": [asdict(p) for p in points]}, indent=1) + "\n")
    return path


def read_quality(path: Path) -> list[SweepPoint]:
    """The points `write_quality` wrote; ValueError when the file is not such a record."""
    try:
        return [SweepPoint(**p) for p in json.loads(path.read_text())["points"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a sampler quality record: {error}") from error


def mean_by_label(points: Sequence[SweepPoint], split: str) -> dict[str, list[tuple[int, float, float]]]:
    """label -> [(calls, mean quality value over seeds, mean seconds)], by calls."""
    grouped: dict[tuple[str, int], list[SweepPoint]] = {}
    for p in points:
        grouped.setdefault((p.label, p.calls), []).append(p)
    curves: dict[str, list[tuple[int, float, float]]] = {}
    for (label, calls), group in sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1])):
        values = [quality_value(p.metrics[split]) for p in group]
        seconds = [p.seconds for p in group]
        curves.setdefault(label, []).append((calls, sum(values) / len(values), sum(seconds) / len(seconds)))
    return curves
