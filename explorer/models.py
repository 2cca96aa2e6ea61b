"""The models the Sample tab draws from: the pretrained checkpoints shipped in assets/checkpoints/ (shared by
everyone, loaded once), each user's own, trained in the Train tab or uploaded as a zip (kept in their session), and
diffusers pipelines from the Hugging Face Hub (fetched by core.hub, loaded once and shared, listed in the menus of
the users who asked for them).

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
from core.diffusers_pipeline import FORMAT as PIPELINE_FORMAT
from core.diffusers_pipeline import load_pipeline
from core.drawn_points import DRAWING, stored_drawing
from core.hub import fetch_pipeline
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
HUB_MODELS_KEPT = 2  # Hub models kept loaded at once, for everyone (the largest, 256 px, take ~0.5 GB each)


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
        """For a 2D model of a known toy set: fresh points of that set (held-out split); of a drawing: the drawn
        points its checkpoint carries (core.drawn_points); else None."""
        if self.is_points and self.dataset_name == DRAWING:
            return stored_drawing(self.checkpoint.config.get("dataset", {}))
        if not self.is_points or self.dataset_name not in TOY_DATASET_NAMES:
            return None
        return load_toy(self.dataset_name, split="test", n=REFERENCE_POINTS).points

    @property
    def is_pipeline(self) -> bool:
        """Whether it is a diffusers pipeline (core.diffusers_pipeline) rather than one of this project's."""
        return self.checkpoint.config.get("format") == PIPELINE_FORMAT

    def describe(self) -> str:
        """One line for the page: what it was trained on, how long, what it predicts."""
        config = self.checkpoint.config
        schedule = f"{config['schedule']['name']} schedule with T = {self.checkpoint.schedule.num_timesteps}"
        if self.is_pipeline:
            channels, side = self.checkpoint.sample_shape[:2]
            count = sum(p.numel() for p in self.model.parameters())
            size = f"{count / 1e6:.1f} M" if count >= 100_000 else f"{count:,}"
            clip = ", clipped to [-1, 1] at every step" if self.checkpoint.clip_x0 else ""
            return (
                f"**{self.name}**: a diffusers {config['pipeline']}, a UNet2DModel of "
                f"{size} parameters drawing {side}x{side} {'RGB' if channels == 3 else 'gray'} pictures; "
                f"predicts {self.checkpoint.objective}{clip}, {schedule}, unconditional."
            )
        model = config.get("model", {})
        size = model.get("extra", {}).get("preset") or model.get("type", "?")
        conditional = f", {self.num_classes} classes (guidance works)" if self.num_classes else ", unconditional"
        return (
            f"**{self.name}**: {self.dataset_name}, {size} network, {self.checkpoint.step:,} training steps, "
            f"predicts {self.checkpoint.objective}, {schedule}{conditional}."
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


@functools.lru_cache(maxsize=HUB_MODELS_KEPT)
def _hub_checkpoint(folder: str, repo_id: str) -> Checkpoint:
    return load_pipeline(folder, device=pick_device("auto"), source=repo_id)


def hub_entry(repo_id: str) -> ModelEntry:
    """The diffusers pipeline of Hub model `repo_id` (core.hub.fetch_pipeline: size-checked, fetched once, cached on
    disk), loaded once for everyone (its weights are shared, never trained) as a ModelEntry of the caller's own.
    core.hub.HubError or CheckpointError say why it cannot be used."""
    folder = fetch_pipeline(repo_id)
    return ModelEntry(f"hub: {repo_id}", _hub_checkpoint(str(folder), repo_id))
