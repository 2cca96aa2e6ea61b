"""Safe image input for the app, and tensor <-> PIL conversion.

`load_image` turns whatever a user gives (a file path, raw bytes, a PIL image, or the uint8 array that
`gr.Image(type="numpy")` passes) into a small upright "RGB" or "L" PIL image, or raises `ImageInputError` with a
message a student can act on. What it guards against (the image rows of /work/shared/RELIABILITY.md):

- odd formats: files are opened with an allow-list (PNG, JPEG, GIF, BMP, WebP), so Pillow never runs the parser of
  any other format (FITS, EPS, DDS and others have had CVEs); SVG, HTML, TIFF, EPS, FITS ... are refused by name;
- decompression bombs: the pixel count is checked from the header, before any pixel is decoded, against our own
  limit `MAX_PIXELS` (independent of Pillow's global `MAX_IMAGE_PIXELS`, which we never change); Pillow's own
  `DecompressionBombWarning`/`DecompressionBombError` are turned into the same "too large" message;
- truncated or corrupt files, zero-byte files, random bytes: "could not read this image" (Pillow's
  `LOAD_TRUNCATED_IMAGES` stays False, so a truncated file is an error, not a grey-padded picture);
- EXIF orientation (`ImageOps.exif_transpose`), animations (the first frame), and every pixel mode Pillow can
  produce (see `normalize_mode`): transparency is composited on white, like a picture on a page (a transparent logo
  or sticker is drawn to be seen on white; black would hide dark strokes), 16/32-bit and float grayscale are
  stretched from their real minimum..maximum to 0..255, CMYK/YCbCr/palette become RGB, 1-bit becomes L.

Finally the image is downscaled (aspect kept, Lanczos) to at most `max_side` pixels on its long side, so every
slider in the app stays fast. JPEGs are decoded directly at a reduced scale (`Image.draft`) when they are much larger.

`image_to_tensor` / `tensor_to_image` convert between these images and the model's [-1, 1] float tensors
(reusing `core.imaging`). `example_images()` lists the bundled example photos (see assets/README.md).
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

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

logger = logging.getLogger(__name__)

# Pillow's format names. Everything else is refused before its parser runs.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# 50 megapixels: a 48/50 MP phone photo (8160 x 6120 = 49.9 MP) still loads; decoding one takes at most ~200 MB
# (RGBA, 4 bytes a pixel) for a moment, which 2-core/16 GB Spaces can afford for a few users at once.
# Pillow's own bomb warning starts at 89.5 MP, so this limit is the one that normally answers.
MAX_PIXELS = 50_000_000
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

CANNOT_READ = "could not read this image: the file is damaged or is not a picture"
ACCEPTED = "use PNG, JPEG, GIF, BMP or WebP"
# How many leading bytes are inspected to name a refused format (an SVG may start with a long XML prolog).
SNIFF_BYTES = 2048
# What a damaged file can make Pillow's allowed decoders raise (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error, zlib.error)

ImageSource = str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray


class ImageInputError(ValueError):
    """An image the app cannot use; the message is meant to be shown to the user as it is."""


def load_image(source: ImageSource, *, max_side: int = 256) -> Image.Image:
    """Read an image safely and return it upright, in mode "RGB" or "L", with its long side <= `max_side`.

    source: a path (str or Path), the file's bytes, a PIL image, or a uint8 numpy array [H, W], [H, W, 1|2|3|4]
    (2 = gray + alpha, 4 = RGBA), as `gr.Image(type="numpy")` gives; a 2-D uint16 array is read as 16-bit gray.
    Raises ImageInputError (a ValueError) for anything that is not a readable, accepted, reasonably sized picture.
    A path that does not exist raises FileNotFoundError, as `open` does.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive integer, got {max_side!r}")
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fp:
            image = _decode(fp, max_side)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _decode(io.BytesIO(bytes(source)), max_side)
    elif isinstance(source, Image.Image):
        image = _from_pil(source)
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        raise TypeError(f"expected a path, bytes, a PIL image or a numpy array, got {type(source).__name__}")
    image = normalize_mode(image)
    if image is source:
        image = image.copy()  # never resize the caller's own image in place
    image.info.pop("transparency", None)  # already applied; would mislead a later save()
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def normalize_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> "RGB" (colour) or "L" (grayscale); returns `image` itself when it already is one.

    Transparent pixels are composited on white (RGBA, LA, PA, P or L/RGB with a transparent colour). 16-bit, 32-bit
    and float grayscale ("I;16*", "I", "F") are stretched from their real min..max to 0..255 (a constant image keeps
    its level: I;16 as value/65535, I and F clipped to 0..255). CMYK, YCbCr, LAB, HSV, palette -> RGB; 1-bit -> L.
    """
    mode = image.mode
    if "transparency" in image.info and mode in ("1", "L", "P", "RGB"):
        # A palette entry or a colour key marks some pixels transparent: expand it to a real alpha channel first.
        image = image.convert("LA" if mode in ("1", "L") else "RGBA")
        mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return _composite_on_white(image)
    if mode == "P":
        rgba_palette = image.palette is not None and image.palette.mode == "RGBA"
        return _composite_on_white(image.convert("RGBA")) if rgba_palette else image.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _stretch_to_l(image)
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


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


# ---------------------------------------------------------------------------------------------------------------
# decoding


def _decode(fp: BinaryIO, max_side: int) -> Image.Image:
    """Open `fp` with the allow-list, check the size from the header, then decode the first frame."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (instead of raising) between MAX_IMAGE_PIXELS and twice that: make it an error here.
            # (catch_warnings is process-wide; if another thread resets the filters meanwhile, our own MAX_PIXELS
            # check below still refuses the image before it is decoded.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(fp, formats=ALLOWED_FORMATS)
            except Image.UnidentifiedImageError:
                raise ImageInputError(_unidentified_message(fp)) from None
            with im:
                _check_size(im.size)  # from the header: nothing is decoded yet
                im.draft(None, (2 * max_side, 2 * max_side))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale if larger
                im.load()  # the first frame of an animation
                return _exif_upright(im)  # a copy, independent of the file
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _too_large_from_pillow(error) from None
    except ImageInputError:
        raise
    except DECODE_ERRORS as error:
        logger.debug("image decoding failed: %r", error)
        raise ImageInputError(CANNOT_READ) from None


def _from_pil(image: Image.Image) -> Image.Image:
    """A PIL image from the caller. One opened from a file (lazily) gets the same format and size checks."""
    if isinstance(image, ImageFile.ImageFile) and image.format and image.format not in (*ALLOWED_FORMATS, "MPO"):
        raise ImageInputError(_refused(image.format))
    _check_size(image.size)
    try:
        image.load()
        return _exif_upright(image)
    except DECODE_ERRORS as error:
        logger.debug("image decoding failed: %r", error)
        raise ImageInputError(CANNOT_READ) from None


def _from_array(array: np.ndarray) -> Image.Image:
    """A numpy image (what gr.Image(type="numpy") gives) -> PIL, with its shape and dtype checked."""
    if array.dtype == np.uint16 and array.ndim == 2:
        _check_size(array.shape[::-1])
        return Image.fromarray(np.ascontiguousarray(array))  # "I;16"
    if array.dtype != np.uint8:
        raise ImageInputError(f"expected an 8-bit image array (uint8), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4))):
        raise ImageInputError(f"expected an image array [H, W] or [H, W, 1-4], got shape {array.shape}")
    _check_size((array.shape[1], array.shape[0]))
    return Image.fromarray(np.ascontiguousarray(array))  # L, LA, RGB or RGBA from the shape


def _exif_upright(image: Image.Image) -> Image.Image:
    """A copy of a loaded image, turned upright by its EXIF orientation; a broken EXIF block is ignored."""
    try:
        return ImageOps.exif_transpose(image)  # a new image even when there is nothing to turn
    except DECODE_ERRORS as error:
        logger.debug("ignoring unreadable EXIF orientation: %r", error)
        return image.copy()


# ---------------------------------------------------------------------------------------------------------------
# limits and messages


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageInputError(f"this image is empty: {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise ImageInputError(
            f"this image is too large: {width}x{height} pixels (the limit is {MAX_PIXELS // 1_000_000} megapixels,"
            f" e.g. 8000x6000); make it smaller and try again"
        )


def _too_large_from_pillow(error: Exception) -> ImageInputError:
    """Pillow's bomb check fires inside Image.open, before we see the size; its message carries the pixel count."""
    words = [w.strip("(),") for w in str(error).split()]
    pixels = next((int(w) for w in words if w.isdigit()), None)
    count = f"{pixels / 1_000_000:,.0f} megapixels" if pixels else "too many pixels"
    return ImageInputError(
        f"this image is too large: {count} (the limit is {MAX_PIXELS // 1_000_000} megapixels, e.g. 8000x6000);"
        " make it smaller and try again"
    )


def _refused(name: str) -> str:
    return f"format {name} is not accepted; {ACCEPTED}"


def _unidentified_message(fp: BinaryIO) -> str:
    """No allowed format recognised the file: name what it is if we can tell (without parsing it)."""
    fp.seek(0)
    name = _sniff_format(fp.read(SNIFF_BYTES))
    return _refused(name) if name else CANNOT_READ


def _sniff_format(prefix: bytes) -> str | None:
    """The format of a file from its first bytes: text formats first, then Pillow's own magic-number tests.

    Only Pillow's `accept(prefix)` functions run (pure byte comparisons), never a format's parser.
    """
    text = prefix.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    if text.startswith(b"%pdf"):
        return "PDF"
    if not prefix:
        return None
    Image.init()
    for name, (_factory, accept) in Image.OPEN.items():
        if name in ALLOWED_FORMATS or accept is None:
            continue
        try:
            if accept(prefix):
                return name
        except Exception:  # an accept function that chokes on short input simply does not recognise it
            continue
    return None


# ---------------------------------------------------------------------------------------------------------------
# modes


def _composite_on_white(image: Image.Image) -> Image.Image:
    """RGBA/LA (straight or premultiplied alpha) -> RGB/L over a white background."""
    if image.mode in ("RGBa", "La", "PA"):
        image = image.convert("RGBA" if image.mode != "La" else "LA")
    array = np.asarray(image, dtype=np.float32)  # (H, W, 2 or 4)
    colour, alpha = array[..., :-1], array[..., -1:] / 255.0
    blended = colour * alpha + 255.0 * (1.0 - alpha)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)  # (H, W, 1 or 3)
    return Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)


def _stretch_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> L, mapping the image's own min..max to 0..255."""
    mode = image.mode
    if mode not in ("I", "F") and not mode.startswith("I;16"):
        image = image.convert("I")  # e.g. "I;32" variants
    array = np.asarray(image).astype(np.float64)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return Image.new("L", image.size, 0)
    low, high = float(finite.min()), float(finite.max())
    array = np.nan_to_num(array, nan=low, posinf=high, neginf=low)
    if high > low:
        scaled = (array - low) * (255.0 / (high - low))
    elif mode.startswith("I;16"):
        scaled = np.full_like(array, low * 255.0 / 65535.0)
    else:
        scaled = np.full_like(array, low)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
