"""Safe image input for the app, and tensor <-> PIL conversion.

`load_image` turns whatever a user gives (a file path, raw bytes, a PIL image, or the uint8 array that
`gr.Image(type="numpy")` passes) into a small upright "RGB" or "L" PIL image, or raises `ImageInputError` with a
message a student can act on. The checks themselves (format allow-list, pixel limit before decoding, truncated and
corrupt files, EXIF orientation, animations, every pixel mode) live in `core.image_files`, so the core's datasets of
the user's own pictures use exactly the same rules; see its docstring for what each guards against. This module
keeps the app's names for them, and the limit the app applies: `MAX_PIXELS`, read at every call (so it can be
lowered here for the app alone).

Finally the image is downscaled (aspect kept, Lanczos) to at most `max_side` pixels on its long side, so every
slider in the app stays fast. JPEGs are decoded directly at a reduced scale (`Image.draft`) when they are much larger.

`image_to_tensor` / `tensor_to_image` convert between these images and the model's [-1, 1] float tensors
(reusing `core.imaging`). `example_images()` lists the bundled example photos (see assets/README.md).

For the Train and Sample tabs: `grid_picture` tiles a batch into one crisp (nearest-neighbour upscaled) picture,
`noise_picture` shows predicted noise (+-3 standard deviations -> black..white), `points_picture` draws 2D samples
over the true data, `side_by_side` joins pictures under a caption, and `write_gif` saves an animation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from core import image_files
from core.image_files import ALLOWED_FORMATS, ImageInputError, ImageSource, normalize_mode
from core.imaging import make_grid, points_to_image, to_pil, to_uint8

__all__ = [
    "ALLOWED_FORMATS",
    "EXAMPLES_DIR",
    "MAX_PIXELS",
    "ImageInputError",
    "example_images",
    "grid_picture",
    "image_to_tensor",
    "load_image",
    "noise_picture",
    "normalize_mode",
    "points_picture",
    "side_by_side",
    "tensor_to_image",
    "tile",
    "write_gif",
]

# The app's pixel limit (by default the core's: 50 megapixels, a 48/50 MP phone photo still loads).
MAX_PIXELS = image_files.MAX_PIXELS
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def load_image(source: ImageSource, *, max_side: int = 256) -> Image.Image:
    """Read an image safely and return it upright, in mode "RGB" or "L", with its long side <= `max_side`.

    source: a path (str or Path), the file's bytes, a PIL image, or a uint8 numpy array [H, W], [H, W, 1|2|3|4]
    (2 = gray + alpha, 4 = RGBA), as `gr.Image(type="numpy")` gives; a 2-D uint16 array is read as 16-bit gray.
    Raises ImageInputError (a ValueError) for anything that is not a readable, accepted, reasonably sized picture.
    A path that does not exist raises FileNotFoundError, as `open` does.
    """
    return image_files.load_image(source, max_side=max_side, max_pixels=MAX_PIXELS)


def image_to_tensor(image: Image.Image, *, channels: int | None = None) -> torch.Tensor:
    """A PIL image -> float32 tensor [1, C, H, W] in [-1, 1] (0 -> -1, 255 -> 1).

    channels: None keeps the image's own (L -> 1, RGB -> 3; other modes go through `normalize_mode` first);
    1 or 3 converts to grayscale or colour.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    image = normalize_mode(image)
    if channels is not None:
        image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W, 1)
    x = torch.from_numpy(array.transpose(2, 0, 1).copy()).float()  # (C, H, W)
    return (x / 127.5 - 1.0).unsqueeze(0)  # (1, C, H, W)


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """A tensor [C, H, W] or [1, C, H, W] in [-1, 1] with C = 1 or 3 -> PIL "L" or "RGB" (outside values clipped)."""
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected one image [C, H, W] or [1, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    return to_pil(to_uint8(x)[0])


def example_images() -> dict[str, Path]:
    """The bundled example photos, name (file stem) -> path, sorted by name; {} if the folder is missing."""
    if not EXAMPLES_DIR.is_dir():
        return {}
    files = sorted(p for p in EXAMPLES_DIR.iterdir() if p.is_file() and p.suffix.lower() in EXAMPLE_SUFFIXES)
    return {p.stem: p for p in files}


DISPLAY_SIDE = 240  # grids are enlarged (nearest neighbour, whole factors) to about this many pixels; the page
# shows them larger with `image-rendering: pixelated` (class PIXELATED): small PNGs, fast to encode and send
NOISE_SIGMAS = 3.0  # noise pictures map -3..+3 standard deviations to black..white
POINTS_SIDE = 360
PIXELATED = "pixelated"  # CSS class of the app's picture components (see explorer.app.CSS)
POINTS_EXTENT = 1.6  # 2D pictures cover [-1.6, 1.6]^2 (the toy sets lie within about +-1.2; x_T spreads wider)


def enlarge(picture: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Repeat pixels by the largest whole factor that keeps the long side <= `side` (at least 1), so small
    digits stay sharp when the browser shows them large."""
    factor = max(1, side // max(picture.shape[:2]))
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


def tile(images: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """uint8 images [B, H, W, C] -> one near-square grid, uint8 [H', W'] (gray) or [H', W', 3], enlarged."""
    grid = make_grid(images, padding=1, pad_value=128)
    grid = grid[..., 0] if grid.shape[-1] == 1 else grid
    return enlarge(grid, side)


def grid_picture(images: torch.Tensor, side: int = DISPLAY_SIDE) -> np.ndarray:
    """A batch [B, C, H, W] in [-1, 1] -> one near-square grid picture (see `tile`)."""
    return tile(to_uint8(images), side)


def noise_picture(noise: torch.Tensor, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Predicted noise [B, C, H, W] (about N(0, 1)) as a grid: -3 sigma black, 0 mid-grey, +3 sigma white."""
    return grid_picture(noise / NOISE_SIGMAS, side)


def points_picture(
    points: torch.Tensor,
    background: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    size: int = POINTS_SIDE,
) -> np.ndarray:
    """2D points [N, 2] as a scatter picture (uint8 RGB, size x size), over `background` points (the true data)
    in grey."""
    image = points_to_image(points, labels, size=size, extent=POINTS_EXTENT, background=background)
    return np.asarray(image)


def _rgb(picture: np.ndarray) -> np.ndarray:
    return np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture


CAPTION_HEIGHT = 22


def side_by_side(pictures: list[np.ndarray], caption: str = "", gap: int = 8) -> np.ndarray:
    """Pictures (gray or RGB uint8) next to each other on white, tops aligned, with a caption line above."""
    pictures = [_rgb(p) for p in pictures]
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + gap * (len(pictures) - 1)
    top = CAPTION_HEIGHT if caption else 0
    canvas = np.full((height + top, width, 3), 255, dtype=np.uint8)
    left = 0
    for picture in pictures:
        canvas[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
        left += picture.shape[1] + gap
    if caption:
        image = Image.fromarray(canvas)
        ImageDraw.Draw(image).text((4, 4), caption, fill=(0, 0, 0))
        canvas = np.asarray(image)
    return canvas


def write_gif(frames: list[np.ndarray], path: str | Path, frame_ms: int = 80, hold_last_ms: int = 1500) -> Path:
    """Save uint8 frames (all the same size) as a looping GIF, one frame each, the last held longer."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    path = Path(path)
    images = [Image.fromarray(_rgb(frame)).convert("P", palette=Image.Palette.ADAPTIVE, colors=255) for frame in frames]
    durations = [frame_ms] * (len(images) - 1) + [hold_last_ms]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False, disposal=1
    )
    return path
