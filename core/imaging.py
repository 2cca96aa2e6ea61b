"""Model tensors to pictures: [-1, 1] float images to uint8 arrays, image grids, PNG and NPZ files; 2D points
to scatter plots and NPZ files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
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


# Ten distinguishable colours (matplotlib's "tab10") for labelled points; unlabelled points use the first.
POINT_COLOURS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


BACKGROUND_COLOUR = (200, 200, 200)


def _to_pixels(points: Tensor, size: int, extent: float) -> np.ndarray:
    xy = points.detach().float().cpu().numpy()
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"expected points [N, 2], got shape {tuple(xy.shape)}")
    middle = (size - 1) / 2
    pixels = np.empty_like(xy)
    pixels[:, 0] = (xy[:, 0] / extent + 1) * middle
    pixels[:, 1] = (1 - xy[:, 1] / extent) * middle  # y up
    return pixels


def _inside(pixels: np.ndarray, size: int) -> np.ndarray:
    return np.isfinite(pixels).all(1) & (pixels >= 0).all(1) & (pixels <= size - 1).all(1)


def points_to_image(
    points: Tensor,
    labels: Tensor | None = None,
    size: int = 512,
    extent: float = 1.25,
    background: Tensor | None = None,
) -> Image.Image:
    """A scatter plot of 2D points [N, 2] on a white square covering [-extent, extent]^2 (y up), with grey axes;
    points are coloured by label when labels are given. Points outside the square are left out.
    background: other points [M, 2] drawn first in light grey (e.g. the true data under samples)."""
    pixels = _to_pixels(points, size, extent)
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    middle = (size - 1) / 2
    draw.line([(0, middle), (size - 1, middle)], fill=(220, 220, 220))
    draw.line([(middle, 0), (middle, size - 1)], fill=(220, 220, 220))
    if background is not None:
        under = _to_pixels(background, size, extent)
        for px, py in under[_inside(under, size)]:
            draw.ellipse([px - 1, py - 1, px + 1, py + 1], fill=BACKGROUND_COLOUR)
    inside = _inside(pixels, size)
    classes = (
        np.zeros(len(pixels), dtype=np.int64) if labels is None else labels.detach().cpu().numpy().astype(np.int64)
    )
    for (px, py), label in zip(pixels[inside], classes[inside], strict=True):
        draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=POINT_COLOURS[label % len(POINT_COLOURS)])
    return image


def save_points(points: Tensor, path: str | Path, labels: Tensor | None = None) -> Path:
    """Write 2D samples to .npz (float32 `points` [N, 2], plus `labels` when given) or .png (a scatter plot)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        points_to_image(points, labels).save(path)
    elif path.suffix.lower() == ".npz":
        extra = {} if labels is None else {"labels": labels.cpu().numpy()}
        np.savez_compressed(path, points=points.detach().float().cpu().numpy(), **extra)
    else:
        raise ValueError(f"output must end in .png or .npz, got {path.name!r}")
    return path
