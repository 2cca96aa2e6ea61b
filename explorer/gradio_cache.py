"""Atomic writes of output pictures into Gradio's cache, so that two users never break each other's pictures.

Gradio (6.x) stores every picture a callback returns under a folder named by the hash of its bytes, and it rewrites
that file on every return (`processing_utils.save_pil_to_cache`: `write_bytes`, which truncates, then writes). Two
users who get the same picture (the Forward tab's defaults, the same seed in the Sample tab: common in a classroom)
write the same path, and a page or client that is downloading it meanwhile receives a truncated file ("Too little
data for declared Content-Length", a broken image). Gradio already copies *files* into its cache atomically
(`save_file_to_cache`: a staging file renamed into place); `make_picture_cache_atomic` gives pictures the same:
the bytes go to a staging file in the same folder and `os.replace` swaps it in, so a reader sees the old complete
file or the new complete file, never a partial one. A picture already in the cache (same bytes, same path) is not
written again, only touched (so Gradio's hourly clean-up keeps it): thirty students on the same seed cost one write.

PNGs are written with zlib level 1: the app's pictures are small pixel grids (explorer.images), which level 1 packs
nearly as small as the default level 6 at a third of the time (0.7 vs 1.8 ms for a 234-px grid of 16 digits; WebP,
Gradio's default format, takes 7 ms; an ad hoc timing on this 2-core machine, not a benchmark), and a class's burst of
samples encodes hundreds of them.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from gradio import processing_utils
from PIL import Image


def encode_picture(img: Image.Image, format: str) -> bytes:
    """The picture's bytes in `format`: PNG at zlib level 1 (see the module docstring), others as Gradio encodes
    them."""
    if format.lower() != "png":
        return processing_utils.encode_pil_to_bytes(img, format)
    with io.BytesIO() as buffer:
        img.save(buffer, "png", compress_level=1, pnginfo=processing_utils.get_pil_metadata(img))
        return buffer.getvalue()


def save_pil_to_cache_atomically(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """`gradio.processing_utils.save_pil_to_cache` with the same path and bytes, written atomically."""
    data = encode_picture(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    if target.is_file() and target.stat().st_size == len(data):  # the same bytes are there, complete
        with contextlib.suppress(FileNotFoundError):
            os.utime(target)
            return str(target)
    fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(staging, 0o644)  # as write_bytes would have made it
        os.replace(staging, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
    return str(target)


def make_picture_cache_atomic() -> None:
    """Route every picture Gradio caches through `save_pil_to_cache_atomically` (idempotent). Image components
    and `save_img_array_to_cache` look the function up in processing_utils at call time."""
    processing_utils.save_pil_to_cache = save_pil_to_cache_atomically
