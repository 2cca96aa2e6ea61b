"""Tiny diffusers pipelines for the tests: a UNet2DModel of ~40k parameters with random weights (diffusers' own
initialisation, from a fixed seed) and a DDPMScheduler, saved as DDPMPipeline.save_pretrained writes them. Built
locally: no network."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

T = 1000
SIDE = 16


def tiny_unet(seed: int = 0, channels: int = 3, side: int = SIDE) -> UNet2DModel:
    """The tiny UNet2DModel, its random weights from `seed`."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=side,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        # attention at the lower level, except for large pictures (16,384 positions at 256 px: a 1 GB matrix)
        down_block_types=("DownBlock2D", "AttnDownBlock2D" if side <= 64 else "DownBlock2D"),
        up_block_types=("AttnUpBlock2D" if side <= 64 else "UpBlock2D", "UpBlock2D"),
        attention_head_dim=4,
    )


def save_pipeline(
    folder: Path, *, safe: bool = True, seed: int = 0, channels: int = 3, side: int = SIDE, **scheduler: object
) -> Path:
    """A DDPMPipeline of a tiny UNet and a DDPMScheduler (T = 1000, linear, epsilon, clip_sample unless told),
    saved as save_pretrained writes it."""
    config = {"num_train_timesteps": T, **scheduler}
    DDPMPipeline(unet=tiny_unet(seed, channels, side), scheduler=DDPMScheduler(**config)).save_pretrained(
        folder, safe_serialization=safe
    )
    return folder


def zip_folder(folder: Path, zip_path: Path, *, inside: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, inside + path.relative_to(folder).as_posix())
    return zip_path
