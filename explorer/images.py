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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import image_files
from core.image_files import ALLOWED_FORMATS, ImageInputError, ImageSource, normalize_mode
from core.imaging import to_pil, to_uint8

__all__ = [
    "ALLOWED_FORMATS",
    "EXAMPLES_DIR",
    "MAX_PIXELS",
    "ImageInputError",
    "example_images",
    "image_to_tensor",
    "load_image",
    "normalize_mode",
    "tensor_to_image",
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
