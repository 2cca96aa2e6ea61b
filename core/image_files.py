"""Safe image-file input: one picture (`load_image`) or many, from a folder or a .zip archive (`iter_files`).

`load_image` turns whatever a user gives (a file path, raw bytes, a PIL image, or a uint8 array) into an upright
"RGB" or "L" PIL image, or raises `ImageInputError` with a message a person can act on. What it guards against (the
image rows of /work/shared/RELIABILITY.md):

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

Finally the image is downscaled (aspect kept, Lanczos) to at most `max_side` pixels on its long side. JPEGs are
decoded directly at a reduced scale (`Image.draft`) when they are much larger.

`iter_files` yields the files of a folder or a .zip (name and bytes), one at a time, for a dataset of the user's own
pictures. A zip is read in memory, never extracted; the whole archive is refused (`ArchiveError`) when a member name
is absolute or climbs out with "..", when it has more than `MAX_FILES` members, or when its members would unpack to
more than `MAX_ARCHIVE_BYTES` (a zip bomb). A folder with more than `MAX_FILES` files is refused the same way.
Hidden files (a name part starting with ".") and macOS's "__MACOSX" folders are ignored; a single file larger than
`MAX_FILE_BYTES` is passed on as unreadable (its name with a reason) rather than read.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, ImageFile, ImageOps

logger = logging.getLogger(__name__)

# Pillow's format names. Everything else is refused before its parser runs.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# 50 megapixels: a 48/50 MP phone photo (8160 x 6120 = 49.9 MP) still loads; decoding one takes at most ~200 MB
# (RGBA, 4 bytes a pixel) for a moment, which 2-core/16 GB Spaces can afford for a few users at once.
# Pillow's own bomb warning starts at 89.5 MP, so this limit is the one that normally answers.
MAX_PIXELS = 50_000_000

CANNOT_READ = "could not read this image: the file is damaged or is not a picture"
ACCEPTED = "use PNG, JPEG, GIF, BMP or WebP"
# How many leading bytes are inspected to name a refused format (an SVG may start with a long XML prolog).
SNIFF_BYTES = 2048
# What a damaged file can make Pillow's allowed decoders raise (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error, zlib.error)

# Folders and zip archives of pictures.
MAX_FILES = 10_000  # files in a folder or members in a zip (directories and hidden files not counted)
MAX_FILE_BYTES = 100 * 2**20  # one picture file; a 50 MP JPEG is ~25 MB
MAX_ARCHIVE_BYTES = 2**30  # the uncompressed total of a zip's members, as its directory declares them
IGNORED_PARTS = ("__MACOSX",)  # resource-fork folders that macOS adds to zips

ImageSource = str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray


class ImageInputError(ValueError):
    """An image the app cannot use; the message is meant to be shown to the user as it is."""


class ArchiveError(ValueError):
    """A folder or zip archive that is refused as a whole (unsafe names, too many members, a zip bomb)."""


class FileEntry(NamedTuple):
    """One file of a folder or archive: its bytes, or (data None) the reason it was not read."""

    name: str  # relative to the folder or archive, "/"-separated
    data: bytes | None
    problem: str | None = None


def load_image(source: ImageSource, *, max_side: int = 256, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read an image safely and return it upright, in mode "RGB" or "L", with its long side <= `max_side`.

    source: a path (str or Path), the file's bytes, a PIL image, or a uint8 numpy array [H, W], [H, W, 1|2|3|4]
    (2 = gray + alpha, 4 = RGBA), as `gr.Image(type="numpy")` gives; a 2-D uint16 array is read as 16-bit gray.
    Images of more than `max_pixels` pixels are refused before they are decoded.
    Raises ImageInputError (a ValueError) for anything that is not a readable, accepted, reasonably sized picture.
    A path that does not exist raises FileNotFoundError, as `open` does.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive integer, got {max_side!r}")
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fp:
            image = _decode(fp, max_side, max_pixels)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _decode(io.BytesIO(bytes(source)), max_side, max_pixels)
    elif isinstance(source, Image.Image):
        image = _from_pil(source, max_pixels)
    elif isinstance(source, np.ndarray):
        image = _from_array(source, max_pixels)
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


# ---------------------------------------------------------------------------------------------------------------
# decoding


def _decode(fp: BinaryIO, max_side: int, max_pixels: int) -> Image.Image:
    """Open `fp` with the allow-list, check the size from the header, then decode the first frame."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (instead of raising) between MAX_IMAGE_PIXELS and twice that: make it an error here.
            # (catch_warnings is process-wide; if another thread resets the filters meanwhile, our own max_pixels
            # check below still refuses the image before it is decoded.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(fp, formats=ALLOWED_FORMATS)
            except Image.UnidentifiedImageError:
                raise ImageInputError(_unidentified_message(fp)) from None
            with im:
                _check_size(im.size, max_pixels)  # from the header: nothing is decoded yet
                im.draft(None, (2 * max_side, 2 * max_side))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale if larger
                im.load()  # the first frame of an animation
                return _exif_upright(im)  # a copy, independent of the file
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _too_large_from_pillow(error, max_pixels) from None
    except ImageInputError:
        raise
    except DECODE_ERRORS as error:
        logger.debug("image decoding failed: %r", error)
        raise ImageInputError(CANNOT_READ) from None


def _from_pil(image: Image.Image, max_pixels: int) -> Image.Image:
    """A PIL image from the caller. One opened from a file (lazily) gets the same format and size checks."""
    if isinstance(image, ImageFile.ImageFile) and image.format and image.format not in (*ALLOWED_FORMATS, "MPO"):
        raise ImageInputError(_refused(image.format))
    _check_size(image.size, max_pixels)
    try:
        image.load()
        return _exif_upright(image)
    except DECODE_ERRORS as error:
        logger.debug("image decoding failed: %r", error)
        raise ImageInputError(CANNOT_READ) from None


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    """A numpy image (what gr.Image(type="numpy") gives) -> PIL, with its shape and dtype checked."""
    if array.dtype == np.uint16 and array.ndim == 2:
        _check_size(array.shape[::-1], max_pixels)
        return Image.fromarray(np.ascontiguousarray(array))  # "I;16"
    if array.dtype != np.uint8:
        raise ImageInputError(f"expected an 8-bit image array (uint8), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4))):
        raise ImageInputError(f"expected an image array [H, W] or [H, W, 1-4], got shape {array.shape}")
    _check_size((array.shape[1], array.shape[0]), max_pixels)
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


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageInputError(f"this image is empty: {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageInputError(
            f"this image is too large: {width}x{height} pixels (the limit is {max_pixels // 1_000_000} megapixels,"
            f" e.g. 8000x6000); make it smaller and try again"
        )


def _too_large_from_pillow(error: Exception, max_pixels: int) -> ImageInputError:
    """Pillow's bomb check fires inside Image.open, before we see the size; its message carries the pixel count."""
    words = [w.strip("(),") for w in str(error).split()]
    pixels = next((int(w) for w in words if w.isdigit()), None)
    count = f"{pixels / 1_000_000:,.0f} megapixels" if pixels else "too many pixels"
    return ImageInputError(
        f"this image is too large: {count} (the limit is {max_pixels // 1_000_000} megapixels, e.g. 8000x6000);"
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


# ---------------------------------------------------------------------------------------------------------------
# folders and zip archives


def iter_files(path: str | Path) -> Iterator[FileEntry]:
    """The files of a folder (recursively, in sorted order) or of a .zip archive, one at a time.

    Yields a FileEntry per file: its bytes, or why it was not read (too large, encrypted, damaged). Raises
    ArchiveError when the folder or archive is refused as a whole (see the module docstring), FileNotFoundError
    when `path` does not exist. Nothing is ever written to disk.
    """
    path = Path(path)
    if path.is_dir():
        yield from _iter_folder(path)
    elif path.is_file():
        if not zipfile.is_zipfile(path):
            raise ArchiveError(f"{path.name} is neither a folder nor a .zip archive of pictures")
        yield from _iter_zip(path)
    else:
        raise FileNotFoundError(f"no such folder or .zip file: {path}")


def _ignored(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") or part in IGNORED_PARTS for part in parts)


def _too_many(count: int, what: str) -> ArchiveError:
    return ArchiveError(f"{what} holds more than {MAX_FILES:,} files ({count:,} or more); use fewer pictures")


def _iter_folder(folder: Path) -> Iterator[FileEntry]:
    files = []
    for directory, subdirectories, names in os.walk(folder):  # symlinked folders are not followed
        relative = Path(directory).relative_to(folder)
        subdirectories[:] = sorted(d for d in subdirectories if not _ignored((d,)))
        for name in names:
            if _ignored((name,)):
                continue
            files.append(relative / name)
            if len(files) > MAX_FILES:
                raise _too_many(len(files), f"folder {folder.name!r}")
    for relative in sorted(files):
        file = folder / relative
        try:
            status = file.stat()  # follows a link to what it names
            if not stat.S_ISREG(status.st_mode):  # a FIFO would block, a link to /dev/zero never end
                yield FileEntry(relative.as_posix(), None, "not a regular file")
                continue
            if status.st_size > MAX_FILE_BYTES:
                yield FileEntry(relative.as_posix(), None, f"larger than {MAX_FILE_BYTES // 2**20} MB")
                continue
            with file.open("rb") as fp:
                data = fp.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows meanwhile
            if len(data) > MAX_FILE_BYTES:
                yield FileEntry(relative.as_posix(), None, f"larger than {MAX_FILE_BYTES // 2**20} MB")
                continue
        except OSError as error:  # unreadable, vanished, a dangling link
            yield FileEntry(relative.as_posix(), None, f"could not be opened ({error.strerror or error})")
            continue
        yield FileEntry(relative.as_posix(), data)


def _unsafe_name(name: str) -> bool:
    """An absolute name ("/x", "\\x", "C:x") or one with a ".." part: it could point outside any folder."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) >= 2 and normalized[1] == ":"):
        return True
    return ".." in PurePosixPath(normalized).parts


def _iter_zip(path: Path) -> Iterator[FileEntry]:
    declared = _declared_entry_count(path)
    if declared is not None and declared > MAX_FILES:  # before zipfile parses a huge central directory
        raise _too_many(declared, f"archive {path.name!r}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise ArchiveError(f"{path.name} is not a readable .zip archive ({error})") from None
    with archive:
        members = archive.infolist()
        unsafe = [m.filename for m in members if _unsafe_name(m.filename)]
        if unsafe:
            raise ArchiveError(
                f"archive {path.name!r} is refused: member {unsafe[0]!r} has an absolute path or '..' "
                "(it could point outside the folder it unpacks into)"
            )
        files = [m for m in members if not m.is_dir() and not _ignored(PurePosixPath(m.filename).parts)]
        if len(files) > MAX_FILES:
            raise _too_many(len(files), f"archive {path.name!r}")
        total = sum(m.file_size for m in members)
        if total > MAX_ARCHIVE_BYTES:
            raise ArchiveError(
                f"archive {path.name!r} is refused: it would unpack to {total / 2**20:,.0f} MB, more than the "
                f"{MAX_ARCHIVE_BYTES // 2**20:,} MB limit (a zip bomb, or too many large pictures)"
            )
        for member in sorted(files, key=lambda m: m.filename):
            if member.file_size > MAX_FILE_BYTES:
                yield FileEntry(member.filename, None, f"larger than {MAX_FILE_BYTES // 2**20} MB")
                continue
            try:
                # zipfile stops at the declared size and checks the CRC, so at most file_size bytes come out
                with archive.open(member) as fp:
                    data = fp.read(MAX_FILE_BYTES + 1)
            except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
                # encrypted, an unsupported compression method, a damaged member
                yield FileEntry(member.filename, None, f"could not be unpacked ({error})")
                continue
            yield FileEntry(member.filename, data)


def _declared_entry_count(path: Path) -> int | None:
    """The entry count in a zip's end-of-central-directory record (ZIP64 too), read without parsing the directory;
    None when the record is not found (zipfile will then say what is wrong)."""
    with path.open("rb") as fp:
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        tail_start = max(0, size - (22 + 65535 + 20))  # EOCD + longest comment + ZIP64 locator
        fp.seek(tail_start)
        tail = fp.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            return None
        count = struct.unpack("<H", tail[at + 10 : at + 12])[0]
        if count != 0xFFFF:
            return count
        locator = at - 20
        if locator < 0 or tail[locator : locator + 4] != b"PK\x06\x07":
            return None
        (offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        fp.seek(offset)
        record = fp.read(56)
        if len(record) < 56 or record[:4] != b"PK\x06\x06":
            return None
        return int(struct.unpack("<Q", record[32:40])[0])
