"""Safe image input (explorer/images.py): the image rows of RELIABILITY.md, each with files made here in tmp_path.

Modes come out as the right RGB/L values, EXIF orientation is applied, animations give their first frame, damaged
files and files of refused formats give a clear message, and a decompression bomb is refused before a single pixel
is decoded.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from explorer import images
from explorer.images import (
    EXAMPLES_DIR,
    MAX_PIXELS,
    ImageInputError,
    example_images,
    image_to_tensor,
    load_image,
    tensor_to_image,
)

CANNOT_READ = "could not read this image: the file is damaged or is not a picture"


def pixels(image: Image.Image) -> list:
    return np.asarray(image).tolist()


def save(image: Image.Image, path: Path, **params) -> Path:
    image.save(path, **params)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_black_1bit_png(path: Path, width: int, height: int) -> Path:
    """A genuine 1-bit grayscale PNG of one colour, streamed row block by row block: huge in pixels, tiny on disk."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    rows_per_block = 1000
    compressor = zlib.compressobj(6)
    with open(path, "wb") as fp:
        fp.write(b"\x89PNG\r\n\x1a\n")
        fp.write(png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)))
        for start in range(0, height, rows_per_block):
            block = compressor.compress(row * min(rows_per_block, height - start))
            if block:
                fp.write(png_chunk(b"IDAT", block))
        fp.write(png_chunk(b"IDAT", compressor.flush()))
        fp.write(png_chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------------------------------------------------------
# modes


def test_rgb_and_l_keep_their_values(tmp_path):
    rgb = Image.fromarray(np.array([[[10, 20, 30], [200, 100, 50]]], dtype=np.uint8))
    gray = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8))
    out_rgb = load_image(save(rgb, tmp_path / "rgb.png"))
    out_l = load_image(save(gray, tmp_path / "l.png"))
    assert out_rgb.mode == "RGB" and pixels(out_rgb) == [[[10, 20, 30], [200, 100, 50]]]
    assert out_l.mode == "L" and pixels(out_l) == [[0, 77, 255]]


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 255, 0], [0, 0, 0, 128], [100, 200, 50, 255]]], dtype=np.uint8)
    out = load_image(save(Image.fromarray(rgba), tmp_path / "rgba.png"))
    # opaque red stays red; a fully transparent pixel is white whatever its colour; half-transparent black is grey
    assert out.mode == "RGB"
    assert pixels(out) == [[[255, 0, 0], [255, 255, 255], [127, 127, 127], [100, 200, 50]]]


def test_la_is_composited_on_white_and_stays_gray(tmp_path):
    la = np.array([[[0, 255], [0, 0], [100, 255], [0, 51]]], dtype=np.uint8)
    out = load_image(save(Image.fromarray(la), tmp_path / "la.png"))
    assert out.mode == "L"
    assert pixels(out) == [[0, 255, 100, 204]]  # 0 * 0.2 + 255 * 0.8 = 204


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency(tmp_path, suffix):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (3 * 253))
    image.putdata([0, 1, 2])
    path = save(image, tmp_path / f"p{suffix}", transparency=1)  # palette entry 1 (green) is transparent
    with Image.open(path) as check:
        assert check.mode == "P" and check.info.get("transparency") == 1
    out = load_image(path)
    assert out.mode == "RGB"
    assert pixels(out) == [[[255, 0, 0], [255, 255, 255], [0, 0, 255]]]


def test_palette_without_transparency_is_rgb(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 40, 50, 60] + [0] * (3 * 254))
    image.putdata([1, 0])
    out = load_image(save(image, tmp_path / "p.png"))
    assert out.mode == "RGB" and pixels(out) == [[[40, 50, 60], [10, 20, 30]]]


def test_palette_with_alpha_in_the_palette():
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 255, 40, 50, 60, 0], rawmode="RGBA")  # entry 1 is fully transparent
    image.putdata([0, 1])
    assert image.palette.mode == "RGBA" and "transparency" not in image.info
    assert pixels(load_image(image)) == [[[10, 20, 30], [255, 255, 255]]]


def test_16bit_gray_is_stretched_from_its_real_range(tmp_path):
    values = np.linspace(1000, 5000, 17).astype(np.uint16)[None, :]  # a 16-bit gradient using 1000..5000 only
    path = save(Image.fromarray(values), tmp_path / "gray16.png")
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # Pillow reads it back as 16-bit ("I;16")
    out = load_image(path)
    expected = np.rint((values.astype(np.float64) - 1000) * 255 / 4000).astype(int)
    assert out.mode == "L"
    assert pixels(out) == expected.tolist()
    assert pixels(out)[0][0] == 0 and pixels(out)[0][-1] == 255  # not clipped to 255 everywhere, not all near 0


def test_16bit_big_endian_and_constant(tmp_path):
    big = Image.frombytes("I;16B", (3, 1), np.array([0, 30000, 60000], dtype=">u2").tobytes())
    assert big.mode == "I;16B"
    assert pixels(load_image(big)) == [[0, 128, 255]]
    constant = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16))
    assert pixels(load_image(constant)) == [[255, 255], [255, 255]]  # a flat white 16-bit image stays white


def test_32bit_integer_and_float_gray_are_stretched(tmp_path):
    int32 = Image.fromarray(np.array([[-70000, 0, 70000]], dtype=np.int32))
    assert int32.mode == "I"
    out = load_image(int32)
    assert out.mode == "L" and pixels(out) == [[0, 128, 255]]
    floats = Image.fromarray(np.array([[0.25, 0.5, 0.75]], dtype=np.float32))
    assert floats.mode == "F"
    assert pixels(load_image(floats)) == [[0, 128, 255]]


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(0, 0, 0, 0), (0, 255, 255, 0)])  # white paper, then magenta + yellow ink = red
    out = load_image(cmyk)
    assert out.mode == "RGB" and pixels(out) == [[[255, 255, 255], [255, 0, 0]]]
    # and through a real CMYK JPEG file (lossy, so approximately)
    red = Image.new("CMYK", (32, 32), (0, 255, 255, 0))
    from_file = load_image(save(red, tmp_path / "cmyk.jpg", quality=95))
    assert from_file.mode == "RGB"
    assert np.abs(np.asarray(from_file).astype(int) - [255, 0, 0]).max() <= 8


def test_one_bit_becomes_l(tmp_path):
    bits = Image.new("1", (4, 1))
    bits.putdata([0, 1, 0, 1])
    out = load_image(save(bits, tmp_path / "bits.png"))
    assert out.mode == "L" and pixels(out) == [[0, 255, 0, 255]]
    assert pixels(load_image(save(bits, tmp_path / "bits.bmp"))) == [[0, 255, 0, 255]]


def test_other_pillow_modes_become_rgb_or_l():
    for mode, colour in [("YCbCr", (128, 128, 128)), ("HSV", (0, 0, 200)), ("RGBX", (1, 2, 3, 0)), ("RGBa", None)]:
        image = Image.new(mode, (2, 2), colour)
        assert load_image(image).mode == "RGB", mode
    assert load_image(Image.new("La", (2, 2))).mode == "L"


def test_numpy_arrays_as_gradio_gives_them():
    gray = np.array([[0, 128], [255, 7]], dtype=np.uint8)
    assert pixels(load_image(gray)) == gray.tolist()
    assert pixels(load_image(gray[:, :, None])) == gray.tolist()
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (9, 8, 7)
    out = load_image(rgb)
    assert out.mode == "RGB" and out.size == (3, 2) and pixels(out)[0][0] == [9, 8, 7]
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (1, 2, 3, 255)
    assert pixels(load_image(rgba)) == [[[1, 2, 3], [255, 255, 255]]]
    with pytest.raises(ImageInputError, match="uint8"):
        load_image(np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(ImageInputError, match="shape"):
        load_image(np.zeros((2, 2, 5), dtype=np.uint8))
    with pytest.raises(ImageInputError, match="empty"):
        load_image(np.zeros((0, 5), dtype=np.uint8))


def test_bytes_and_pil_sources(tmp_path):
    image = Image.fromarray(np.array([[[1, 2, 3]]], dtype=np.uint8))
    path = save(image, tmp_path / "one.png")
    assert pixels(load_image(path.read_bytes())) == [[[1, 2, 3]]]
    assert pixels(load_image(str(path))) == [[[1, 2, 3]]]
    with Image.open(path) as opened:
        assert pixels(load_image(opened)) == [[[1, 2, 3]]]


# ---------------------------------------------------------------------------------------------------------------
# orientation, animation, size


def test_exif_orientation_6_comes_out_upright(tmp_path):
    stored = np.zeros((40, 80, 3), dtype=np.uint8)  # 80 wide, 40 high, as the camera stored it
    stored[:12, :12] = (255, 0, 0)  # a red mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show it rotated 90 degrees clockwise
    path = save(Image.fromarray(stored), tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    out = np.asarray(load_image(path)).astype(int)
    assert out.shape[:2] == (80, 40)  # height x width: transposed
    assert np.abs(out[4, 35] - [255, 0, 0]).max() < 40  # the mark is now in the top-right corner
    assert np.abs(out[4, 4] - [0, 0, 0]).max() < 40  # and not where it was stored
    assert out[75, 35].max() < 40 and out[75, 4].max() < 40


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_animation_gives_its_first_frame(tmp_path, suffix):
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    extra = {"lossless": True} if suffix == ".webp" else {}
    path = save(frames[0], tmp_path / f"anim{suffix}", save_all=True, append_images=frames[1:], duration=100, **extra)
    with Image.open(path) as check:
        assert check.n_frames == 3
    out = load_image(path)
    assert out.mode == "RGB" and np.unique(np.asarray(out).reshape(-1, 3), axis=0).tolist() == [[255, 0, 0]]


def test_downscale_keeps_aspect_and_never_enlarges(tmp_path):
    wide = save(Image.new("RGB", (300, 100), (5, 6, 7)), tmp_path / "wide.png")
    assert load_image(wide, max_side=64).size in {(64, 21), (64, 22)}
    tall = save(Image.new("L", (90, 1000), 9), tmp_path / "tall.png")
    width, height = load_image(tall).size
    assert height == 256 and abs(width - 90 * 256 / 1000) <= 1
    assert load_image(wide, max_side=1000).size == (300, 100)
    big_jpeg = save(Image.new("RGB", (2400, 1600), (0, 90, 200)), tmp_path / "big.jpg")
    out = load_image(big_jpeg)  # decoded at a reduced scale first (Image.draft), then Lanczos
    assert out.size == (256, 171) and np.abs(np.asarray(out).astype(int) - [0, 90, 200]).max() <= 6
    with pytest.raises(ValueError, match="max_side"):
        load_image(wide, max_side=0)


def test_callers_pil_image_is_not_changed():
    image = Image.new("RGB", (600, 400))
    load_image(image)
    assert image.size == (600, 400)


# ---------------------------------------------------------------------------------------------------------------
# damaged files


def noise_image(size: int = 128) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_cannot_be_read(tmp_path, suffix):
    whole = save(noise_image(), tmp_path / f"whole{suffix}").read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageInputError, match=CANNOT_READ):
        load_image(path)
    with pytest.raises(ImageInputError, match=CANNOT_READ):
        load_image(path.read_bytes())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_zero_bytes_and_random_bytes_cannot_be_read(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.png"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for source in (empty, noise, b"", noise.read_bytes()):
        with pytest.raises(ImageInputError, match=CANNOT_READ):
            load_image(source)


def test_missing_file_is_not_an_image_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nothing.png")


# ---------------------------------------------------------------------------------------------------------------
# refused formats


def svg_file(path: Path) -> None:
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>\n'
    )


def html_file(path: Path) -> None:
    path.write_text("<!DOCTYPE html>\n<html><body><img src=x onerror=alert(1)></body></html>\n")


def eps_file(path: Path) -> None:
    path.write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
        b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
    )


def tiff_file(path: Path) -> None:
    Image.new("RGB", (10, 10), (1, 2, 3)).save(path, format="TIFF")


def fits_file(path: Path) -> None:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2"]
    cards += ["NAXIS1  =                   10", "NAXIS2  =                   10", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode("ascii")
    path.write_bytes(header + bytes(100).ljust(2880, b"\x00"))


@pytest.mark.parametrize(
    ("name", "make", "suffix"),
    [
        ("SVG", svg_file, ".svg"),
        ("HTML", html_file, ".html"),
        ("EPS", eps_file, ".eps"),
        ("TIFF", tiff_file, ".tif"),
        ("FITS", fits_file, ".fits"),
    ],
)
@pytest.mark.parametrize("named_png", [False, True])
def test_refused_formats(tmp_path, monkeypatch, name, make, suffix, named_png):
    path = tmp_path / (f"innocent{'.png' if named_png else suffix}")
    make(path)
    # the parser of a refused format must never run: replace each non-allowed Pillow opener with a trap
    Image.init()
    opened = []
    for fmt, (_factory, accept) in list(Image.OPEN.items()):
        if fmt not in images.ALLOWED_FORMATS:

            def trap(*args, fmt=fmt, **kwargs):
                opened.append(fmt)
                raise AssertionError(f"{fmt} parser ran")

            monkeypatch.setitem(Image.OPEN, fmt, (trap, accept))
    with pytest.raises(ImageInputError, match="is not accepted; use PNG, JPEG, GIF, BMP or WebP") as refused:
        load_image(path)
    assert f"format {name} " in str(refused.value)
    assert opened == []


def test_refused_format_given_as_an_opened_pil_image(tmp_path):
    tiff_file(tmp_path / "x.tif")
    with Image.open(tmp_path / "x.tif") as opened, pytest.raises(ImageInputError, match="format TIFF"):
        load_image(opened)


# ---------------------------------------------------------------------------------------------------------------
# decompression bombs


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if Pillow starts any decoder: proves a file was refused from its header alone."""

    def trap(*args, **kwargs):
        raise AssertionError("a decoder was started")

    monkeypatch.setattr(Image, "_getdecoder", trap)


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (20000, 20000, "400 megapixels"),  # over twice Pillow's limit: Pillow's DecompressionBombError
        (10000, 10000, "100 megapixels"),  # between Pillow's limit and twice it: its warning, made an error here
        (8000, 7000, "8000x7000 pixels"),  # under Pillow's limit, over ours
    ],
)
def test_decompression_bomb_is_refused_before_decoding(tmp_path, no_decoding, width, height, message):
    path = write_black_1bit_png(tmp_path / "bomb.png", width, height)
    assert path.stat().st_size < 200_000  # small on disk
    pillow_limits = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    start = time.perf_counter()
    with pytest.raises(ImageInputError, match="this image is too large") as refused:
        load_image(path)
    assert time.perf_counter() - start < 0.5
    assert message in str(refused.value) and f"{MAX_PIXELS // 1_000_000} megapixels" in str(refused.value)
    assert pillow_limits == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)  # globals untouched


def test_too_large_as_bytes_lazy_pil_image_and_array(tmp_path, no_decoding):
    data = write_black_1bit_png(tmp_path / "bomb.png", 20000, 20000).read_bytes()
    with pytest.raises(ImageInputError, match="too large"):
        load_image(data)
    path = write_black_1bit_png(tmp_path / "big.png", 8000, 7000)
    with Image.open(path) as opened, pytest.raises(ImageInputError, match="8000x7000 pixels"):
        load_image(opened)  # opened by the caller but not decoded yet: refused before load()
    with pytest.raises(ImageInputError, match="8000x7000 pixels"):
        load_image(np.zeros((7000, 8000), dtype=np.uint8))  # calloc'd pages, never touched


def test_an_image_at_the_limit_is_not_refused_for_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    ok = save(Image.new("L", (100, 100)), tmp_path / "ok.png")
    assert load_image(ok).size == (100, 100)
    over = save(Image.new("L", (101, 100)), tmp_path / "over.png")
    with pytest.raises(ImageInputError, match="101x100 pixels"):
        load_image(over)


# ---------------------------------------------------------------------------------------------------------------
# tensors


def test_image_tensor_round_trip():
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8))
    x = image_to_tensor(rgb)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert pixels(tensor_to_image(x)) == pixels(rgb)
    assert pixels(tensor_to_image(x[0])) == pixels(rgb)
    gray = Image.fromarray(np.array([[0, 255]], dtype=np.uint8))
    assert image_to_tensor(gray).tolist() == [[[[-1.0, 1.0]]]]
    assert tensor_to_image(image_to_tensor(gray)).mode == "L"


def test_tensor_image_tensor_within_one_step():
    x = torch.rand(1, 3, 6, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    back = image_to_tensor(tensor_to_image(x))
    assert (back - x).abs().max() <= 1 / 255 + 1e-6  # half of one 8-bit step (2/255) in [-1, 1]
    assert tensor_to_image(torch.full((1, 1, 2, 2), 5.0)).getpixel((0, 0)) == 255  # out of range: clipped


def test_channels_are_forced_when_asked():
    rgb = Image.new("RGB", (4, 3), (255, 0, 0))
    gray = Image.new("L", (4, 3), 255)
    assert image_to_tensor(rgb, channels=1).shape == (1, 1, 3, 4)
    assert image_to_tensor(gray, channels=3).shape == (1, 3, 3, 4)
    assert image_to_tensor(gray, channels=3).eq(1).all()
    assert image_to_tensor(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).eq(1).all()  # transparent -> white
    with pytest.raises(ValueError, match="channels"):
        image_to_tensor(rgb, channels=2)
    with pytest.raises(ValueError, match="shape"):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


# ---------------------------------------------------------------------------------------------------------------
# bundled examples


def test_example_images_are_bundled_and_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths come from the package, not the working directory
    examples = example_images()
    assert EXAMPLES_DIR.is_absolute()
    assert len(examples) >= 4 and list(examples) == sorted(examples)
    assert {"astronaut", "camera", "chelsea", "coffee"} <= set(examples)
    total = 0
    for name, path in examples.items():
        assert path.is_file() and path.stem == name
        image = load_image(path)
        assert image.mode in ("RGB", "L") and max(image.size) <= 256
        total += path.stat().st_size
    assert total < 1_000_000
