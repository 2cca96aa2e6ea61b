"""The models the Sample tab draws from: the pretrained checkpoints shipped in assets/checkpoints/ (shared by
everyone, loaded once), and each user's own, trained in the Train tab or uploaded as a zip (kept in their session).

A `ModelEntry` wraps a loaded `core.checkpoint.Checkpoint` with what the tab needs to know about it: images or
2D points, its sample shape, whether it takes a class, (for 2D models) the true data to draw under samples, and
where its sample quality against network calls comes from: a shipped model's precomputed sweep
(core.sampler_sweep.QUALITY_FILE in its folder), or what the user measured for their own one in this session.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from core.checkpoint import Checkpoint, load_checkpoint
from core.data import ASSETS
from core.device import pick_device
from core.metrics import has_metric
from core.sampler_sweep import QUALITY_FILE, SweepPoint
from core.samplers import SamplingDefaults
from core.toy_data import TOY_DATASET_NAMES, load_toy

PRETRAINED_DIR = ASSETS / "checkpoints"
PRETRAINED: dict[str, str] = {  # folder -> name in the model menu, in menu order
    "mnist_uncond": "Digits (pretrained)",
    "mnist_cond": "Digits by class (pretrained)",
    "toy_moons": "2D moons (pretrained)",
    "toy_swiss_roll": "2D swiss roll (pretrained)",
    "toy_eight_gaussians": "2D eight Gaussians (pretrained)",
    "toy_checkerboard": "2D checkerboard (pretrained)",
    "toy_spiral": "2D spiral (pretrained)",
}
DEFAULT_MODEL = PRETRAINED["mnist_uncond"]
REFERENCE_POINTS = 2000  # true 2D data drawn under samples


@dataclass
class ModelEntry:
    """A loaded model and the facts the Sample tab needs about it."""

    name: str
    checkpoint: Checkpoint
    quality_path: Path | None = None  # a shipped model's precomputed sampler sweep (may not exist yet)
    measured: list[SweepPoint] = field(default_factory=list)  # a user's own model: the sweep they measured

    @property
    def shipped(self) -> bool:
        return self.quality_path is not None

    @property
    def model(self) -> nn.Module:
        return self.checkpoint.sampling_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_points(self) -> bool:
        return len(self.checkpoint.sample_shape) == 1

    @property
    def num_classes(self) -> int | None:
        return getattr(self.model, "num_classes", None) or None

    @property
    def sampling_defaults(self) -> SamplingDefaults:
        """The sampler settings this model samples best with, for the Sample tab's controls: `.sampler` is core's
        name (the tab shows explorer.sampling_run.SAMPLER_LABELS[name]), `.steps` an int in 1..T, `.eta` a float in
        0..1, `.spacing` one of core.noise_levels.SPACINGS. From the checkpoint's config.json record, or its
        objective's defaults when it has none."""
        return self.checkpoint.sampling_defaults

    @property
    def dataset_name(self) -> str:
        return str(self.checkpoint.config.get("dataset", {}).get("name", "?"))

    @property
    def scorable(self) -> bool:
        """Whether core.metrics can score its samples (the digits, the 2D toy sets); False for data it does not
        know, such as a checkpoint that names no data set."""
        return has_metric(self.dataset_name)

    @functools.cached_property
    def reference_points(self) -> Tensor | None:
        """For a 2D model of a known toy set: fresh points of that set (held-out split), else None."""
        if not self.is_points or self.dataset_name not in TOY_DATASET_NAMES:
            return None
        return load_toy(self.dataset_name, split="test", n=REFERENCE_POINTS).points

    def describe(self) -> str:
        """One line for the page: what it was trained on, how long, what it predicts."""
        config = self.checkpoint.config
        model = config.get("model", {})
        size = model.get("extra", {}).get("preset") or model.get("type", "?")
        conditional = f", {self.num_classes} classes (guidance works)" if self.num_classes else ", unconditional"
        return (
            f"**{self.name}**: {self.dataset_name}, {size} network, {self.checkpoint.step:,} training steps, "
            f"predicts {self.checkpoint.objective}, {config['schedule']['name']} schedule with "
            f"T = {self.checkpoint.schedule.num_timesteps}{conditional}."
        )


def load_entry(name: str, directory: str | Path) -> ModelEntry:
    """Load a checkpoint folder (on the GPU when there is one) as a ModelEntry; CheckpointError if it is bad."""
    checkpoint = load_checkpoint(directory, device=pick_device("auto"))
    checkpoint.sampling_model.eval().requires_grad_(False)
    return ModelEntry(name, checkpoint)


@functools.lru_cache(maxsize=len(PRETRAINED))
def _pretrained(folder: str) -> ModelEntry:
    entry = load_entry(PRETRAINED[folder], PRETRAINED_DIR / folder)
    entry.quality_path = PRETRAINED_DIR / folder / QUALITY_FILE
    return entry


def pretrained_names() -> list[str]:
    """Menu names of the shipped checkpoints that are present."""
    return [name for folder, name in PRETRAINED.items() if (PRETRAINED_DIR / folder / "config.json").is_file()]


def pretrained(name: str) -> ModelEntry | None:
    """The shared pretrained model of that menu name (loaded on first use), or None if it is not one."""
    for folder, label in PRETRAINED.items():
        if label == name:
            return _pretrained(folder)
    return None
