"""A picture as a model's starting point for SDEdit (Meng et al. 2021; core.sdedit): fitted to the model's size and
channels, and noised to t with the model's own schedule.

`fit_picture` centre-crops a picture to the model's aspect and resizes it (Lanczos), in grey or RGB as the model
draws, scaled to [-1, 1]; the picture itself is read by explorer.images' safe loader before it gets here.
`noised_start` is the forward process's x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps (core.diffusion.
q_sample) with the model's schedule and eps drawn from a seed exactly as the Sample tab draws its x_T
(explorer.sampling_run.starting_noise), so a seed means the same noise in both tabs. explorer.sampling_run.run_sampling
(start_t=t) then denoises it step by step on the app's compute worker.
"""

from __future__ import annotations

from typing import NamedTuple

from PIL import Image, ImageOps
from torch import Tensor

from core.diffusion import q_sample
from explorer.images import image_to_tensor, normalize_mode
from explorer.models import ModelEntry
from explorer.sampling_run import starting_noise


class NoisedStart(NamedTuple):
    """Where an SDEdit run starts: the picture x_0 at the model's size, the noise eps, and x_t, each [1, C, H, W]
    on the model's device."""

    x0: Tensor
    noise: Tensor
    x_t: Tensor
    t: int


def fit_picture(image: Image.Image, shape: tuple[int, ...]) -> Tensor:
    """A PIL picture -> [1, C, H, W] in [-1, 1] for a model that draws pictures of `shape` (C, H, W) with C = 1
    (grey) or 3 (RGB): centre-cropped to the model's aspect, then resized (Lanczos)."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"SDEdit needs a model that draws grey or RGB pictures, not samples of shape {shape}")
    channels, height, width = shape
    fitted = ImageOps.fit(normalize_mode(image), (width, height), Image.Resampling.LANCZOS)
    return image_to_tensor(fitted, channels=channels)  # (1, C, H, W)


def noised_start(entry: ModelEntry, x0: Tensor, t: int, seed: int) -> NoisedStart:
    """x_0 noised to timestep t with the model's schedule, eps from `seed` (ValueError for t outside 0..T-1)."""
    schedule = entry.checkpoint.schedule
    if not 0 <= t < schedule.num_timesteps:
        raise ValueError(f"t must be from 0 to {schedule.num_timesteps - 1} for this model (its T), got {t}")
    noise = starting_noise(entry, 1, seed)  # (1, C, H, W)
    x0 = x0.to(noise.device, noise.dtype)
    return NoisedStart(x0, noise, q_sample(schedule, x0, t, noise), t)
