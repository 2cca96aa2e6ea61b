"""Model tensors to pictures: [-1, 1] float images to uint8 arrays, image grids, PNG and NPZ files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """[B, C, H, W] floats in [-1, 1] -> uint8 [B, H, W, C] (values outside [-1, 1] are clipped)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.numpy().astype(np.uint8).transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, ncols: int | None = None, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 [B, H, W, C] images into one [rows*(H+p)+p, cols*(W+p)+p, C] array (near-square by default)."""
    count, height, width, channels = images.shape
    ncols = ncols or math.ceil(math.sqrt(count))
    nrows = math.ceil(count / ncols)
    grid = np.full(
        (nrows * (height + padding) + padding, ncols * (width + padding) + padding, channels), pad_value, dtype=np.uint8
    )
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def to_pil(array: np.ndarray) -> Image.Image:
    """uint8 [H, W, 1 or 3] -> a PIL image (grayscale for one channel)."""
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def save_images(images: Tensor, path: str | Path, labels: Tensor | None = None) -> Path:
    """Write samples to .png (a grid) or .npz (uint8 `images` [B, H, W, C], plus `labels` when given)."""
    path = Path(path)
    array = to_uint8(images)
    if path.suffix.lower() == ".png":
        to_pil(make_grid(array)).save(path)
    elif path.suffix.lower() == ".npz":
        extra = {} if labels is None else {"labels": labels.cpu().numpy()}
        np.savez_compressed(path, images=array, **extra)
    else:
        raise ValueError(f"output must end in .png or .npz, got {path.name!r}")
    return path
