"""Uploads through the real server: pictures on the Forward process tab and checkpoints on the Sample tab.

A file over the app's size limit is refused by Gradio before any of our code runs, and one just under it is read.
Pictures of refused formats (TIFF, EPS, FITS, HTML) are refused under their own name and renamed .png; an animated
GIF gives its first frame, an EXIF-turned JPEG comes out upright, every pixel mode gives a picture, and a truncated
file gives "could not read this image". A checkpoint zip made by this project is accepted and samples; a zip with a
pickle, paths out of its folder, a zip bomb, too many members, damaged, truncated or NaN weights, or a config that
does not fit its weights is refused with a clear message, nothing runs or is written outside, and the user's model
in use is untouched: it is still listed and draws the very same picture.

The server runs in this process (tests/conftest.py), so a counting wrapper around the Forward tab's image reader
tells whether the handler read a file at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import tempfile
import uuid
import zipfile
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.torch import load, save

import explorer.tabs.forward as forward_tab
from core.checkpoint import save_checkpoint
from core.checkpoint_archive import pack_checkpoint
from core.schedules import make_schedule
from core.unet import UNet, UNetConfig
from explorer.app import LAUNCH_OPTIONS
from explorer.tabs.forward import MY_UPLOAD

LIMIT = 20 * 2**20  # "20mb": Gradio counts 1 kb = 1024 bytes
CANNOT_READ = "could not read this image: the file is damaged or is not a picture"


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The paths the Forward tab's handler reads a picture from, while the test runs."""
    seen: list[str] = []
    original = forward_tab.load_image

    def counting(source, **kwargs):
        seen.append(str(source))
        return original(source, **kwargs)

    monkeypatch.setattr(forward_tab, "load_image", counting)
    return seen


def forward(client: Client, path: Path) -> tuple:
    """/forward_step on an uploaded file at t = 0, where the 'signal' output (index 1) is the picture itself."""
    return client.predict(MY_UPLOAD, handle_file(str(path)), "linear", 0, 0, "cosine", False, api_name="/forward_step")


def rgb(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def noise_png(path: Path, size: int, seed: int) -> Path:
    """A valid PNG of random noise, exactly `size` bytes: padded with a private ancillary chunk after IHDR."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    png = buffer.getvalue()
    header_end = 8 + 25  # signature, then the IHDR chunk
    padding = png_chunk(b"prVt", b"\x00" * (size - len(png) - 12))
    path.write_bytes(png[:header_end] + padding + png[header_end:])
    assert path.stat().st_size == size
    return path


# ---- the size limit --------------------------------------------------------------------------------------------


def test_the_app_launches_with_a_20_mb_limit_that_the_server_enforces(client):
    assert LAUNCH_OPTIONS["max_file_size"] == "20mb"
    assert client.config["max_file_size"] == LIMIT


def test_a_file_one_byte_over_the_limit_is_refused_before_the_handler_runs(app_url, client, reads, tmp_path):
    over = noise_png(tmp_path / "over.png", LIMIT + 1, seed=1)
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {LIMIT} bytes"):
        forward(client, over)  # gradio_client checks the size it read from the server's config
    # and the server itself refuses it, for a script that does not check
    response = httpx.post(f"{app_url}gradio_api/upload", files=[("files", ("over.png", over.read_bytes()))], timeout=60)
    assert response.status_code == 413
    assert f"File size exceeded maximum allowed size of {LIMIT} bytes" in response.text
    assert reads == []
    # the server keeps serving
    assert client.predict("astronaut", None, "linear", 10, 0, "cosine", False, api_name="/forward_step")[0]


def test_a_picture_one_byte_under_the_limit_is_accepted_and_read(client, reads, tmp_path):
    under = noise_png(tmp_path / "under.png", LIMIT - 1, seed=2)
    outputs = forward(client, under)
    assert len(reads) == 1 and reads[0].endswith("under.png")
    assert rgb(outputs[1]).shape == (64, 64, 3)


# ---- pictures ----------------------------------------------------------------------------------------------------


def tiff_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(buffer, format="TIFF")
    return buffer.getvalue()


def fits_bytes() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2"]
    cards += ["NAXIS1  =                   10", "NAXIS2  =                   10", "END"]
    return "".join(card.ljust(80) for card in cards).ljust(2880).encode("ascii") + bytes(2880)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nnewpath 0 0 moveto 10 10 lineto stroke\n"
HTML = b"<!DOCTYPE html>\n<html><body><img src=x onerror=alert(1)></body></html>\n"
REFUSED_FORMATS = [("TIFF", tiff_bytes(), ".tif"), ("EPS", EPS, ".eps"), ("FITS", fits_bytes(), ".fits")]
REFUSED_FORMATS += [("HTML", HTML, ".html")]


@pytest.mark.parametrize(("name", "content", "suffix"), REFUSED_FORMATS, ids=[row[0] for row in REFUSED_FORMATS])
def test_a_refused_format_is_refused_under_its_own_name_and_renamed_png(client, reads, tmp_path, name, content, suffix):
    own = tmp_path / f"picture{suffix}"
    own.write_bytes(content)
    with pytest.raises(AppError, match="Invalid file type"):  # Gradio's file_types, before our code
        forward(client, own)
    assert reads == []
    renamed = tmp_path / "picture.png"
    renamed.write_bytes(content)
    with pytest.raises(AppError, match=f"format {name} is not accepted; use PNG, JPEG, GIF, BMP or WebP"):
        forward(client, renamed)
    assert len(reads) == 1


def test_an_animated_gif_gives_its_first_frame(client, tmp_path):
    frames = [Image.new("RGB", (48, 32), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    picture = rgb(forward(client, path)[1])
    assert picture.shape == (32, 48, 3)
    assert np.abs(picture - [255, 0, 0]).max() < 30


def test_an_exif_orientation_6_jpeg_comes_out_upright(client, tmp_path):
    stored = np.zeros((40, 80, 3), dtype=np.uint8)  # 80 wide, 40 high, as the camera stored it
    stored[:12, :12] = (255, 0, 0)  # a red mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown turned 90 degrees clockwise
    path = tmp_path / "turned.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    picture = rgb(forward(client, path)[1])
    assert picture.shape == (80, 40, 3)  # taller than wide
    assert np.abs(picture[4, 35] - [255, 0, 0]).max() < 50  # the mark is in the top-right corner
    assert picture[4, 4].max() < 50 and picture[75, 4].max() < 50 and picture[75, 35].max() < 50


def halves(mode: str, left, right) -> Image.Image:
    """A 32 x 24 image of `mode` whose left half is `left` and right half `right`."""
    image = Image.new(mode, (32, 24), left)
    image.paste(right, (16, 0, 32, 24))
    return image


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (32, 24), 1)
    image.putpalette([0, 0, 0, 255, 0, 0])  # 0 black, 1 red
    image.paste(0, (16, 0, 32, 24))
    image.info["transparency"] = 0  # black is transparent
    return image


def sixteen_bit() -> Image.Image:
    array = np.zeros((24, 32), dtype=np.uint16)
    array[:, 16:] = 65535
    image = Image.fromarray(array)
    assert image.mode == "I;16"
    return image


RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
MODES = [  # mode, picture, file suffix, expected left and right colours (transparency composited on white)
    ("RGBA", halves("RGBA", (255, 0, 0, 255), (0, 0, 255, 0)), ".png", RED, WHITE),
    ("LA", halves("LA", (0, 255), (0, 0)), ".png", BLACK, WHITE),
    ("P with transparency", palette_with_transparency(), ".png", RED, WHITE),
    ("I;16", sixteen_bit(), ".png", BLACK, WHITE),
    ("CMYK", halves("CMYK", (0, 255, 255, 0), (255, 255, 0, 0)), ".jpg", RED, BLUE),
    ("1", halves("1", 0, 1), ".png", BLACK, WHITE),
    ("L", halves("L", 60, 200), ".png", (60, 60, 60), (200, 200, 200)),
]


@pytest.mark.parametrize(("mode", "image", "suffix", "left", "right"), MODES, ids=[row[0] for row in MODES])
def test_every_pixel_mode_is_accepted_and_gives_a_picture(client, tmp_path, mode, image, suffix, left, right):
    path = tmp_path / f"mode{suffix}"
    image.save(path, **({"quality": 95} if suffix == ".jpg" else {}))
    with Image.open(path) as check:
        assert check.mode == image.mode
    picture = rgb(forward(client, path)[1])
    assert picture.shape == (24, 32, 3)
    tolerance = 40 if suffix == ".jpg" else 12
    assert np.abs(picture[12, 6] - left).max() <= tolerance
    assert np.abs(picture[12, 25] - right).max() <= tolerance


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_truncated_picture_cannot_be_read(client, tmp_path, suffix):
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(
        whole, "PNG" if suffix == ".png" else "JPEG"
    )
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(AppError, match=CANNOT_READ):
        forward(client, path)


# ---- checkpoints -------------------------------------------------------------------------------------------------

MODEL_NAME = "uploaded: mine"
SESSIONS_ROOT = Path(tempfile.gettempdir()) / "ddpm-explorer-sessions"  # explorer.sessions' default


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
    with torch.no_grad():  # its output layer starts at zero: random weights make every picture it draws its own
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    config = {"schedule": make_schedule("cosine", 100).params, "objective": "x0", "step": 3}
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint") / "run", model, config, ema_model=model)


def members_of(folder: Path) -> dict[str, bytes]:
    return {file.name: file.read_bytes() for file in folder.iterdir()}


def model_weights(members: dict[str, bytes]) -> str:
    """The member holding the model's weights: model.safetensors, or model.<hash>.safetensors."""
    return next(name for name in members if name.startswith("model.") and name.endswith(".safetensors"))


def with_weights(members: dict[str, bytes], data: bytes) -> dict[str, bytes]:
    """The members with the model's weights replaced by `data` and config.json's hash of them updated, so only
    what is in the file can give it away."""
    name = model_weights(members)
    config = json.loads(members["config.json"])
    config["files"][name] = hashlib.sha256(data).hexdigest()
    return {**members, name: data, "config.json": json.dumps(config).encode()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def owner(app_url, checkpoint_dir, tmp_path_factory):
    """A user who uploaded mine.zip: their client, what the upload returned, and a picture the model drew."""
    user = Client(app_url, verbose=False)
    path = pack_checkpoint(checkpoint_dir, tmp_path_factory.mktemp("good") / "mine.zip")
    uploaded = user.predict(handle_file(str(path)), api_name="/upload_checkpoint")
    return user, uploaded, drawing(user)


def drawing(user: Client) -> np.ndarray:
    """The final predicted x0 of a two-step run of the user's model from seed 0."""
    outputs = user.predict(model=MODEL_NAME, steps=2, count=1, seed=0, api_name="/sample")
    assert "2 of 2 steps" in outputs[0]
    return rgb(outputs[2])


def test_a_checkpoint_zip_made_by_the_app_is_accepted_and_samples(owner):
    user, (menu, note), picture = owner
    assert menu["value"] == MODEL_NAME and [MODEL_NAME, MODEL_NAME] in menu["choices"]
    assert note == f"Added **{MODEL_NAME}** to the menu."
    assert "3 training steps" in user.predict(MODEL_NAME, api_name="/describe_model")[0]
    assert picture.ndim == 3 and picture.std() > 0


class WritesMarker:
    """Unpickling this would create a file: the tests check it never appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def bomb_zip(path: Path, config: bytes) -> Path:
    """config.json and a model.safetensors of 300 MB of zeros (about 1 MB compressed), written in chunks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("config.json", config)
        with archive.open("model.safetensors", "w", force_zip64=True) as member:
            chunk = bytes(2**20)
            for _ in range(300):
                member.write(chunk)
    return path


def nan_weights(members: dict[str, bytes]) -> dict[str, bytes]:
    """The members with one of the model's weights set to NaN (a well-formed file, its hash updated)."""
    tensors = load(members[model_weights(members)])
    first = next(key for key, value in tensors.items() if value.is_floating_point())
    tensors[first].view(-1)[0] = float("nan")
    return with_weights(members, save(tensors))


def wider_config(members: dict[str, bytes]) -> dict[str, bytes]:
    config = json.loads(members["config.json"])
    config["model"]["base_channels"] = 16  # the weights are for 8
    return {**members, "config.json": json.dumps(config).encode()}


MARKER = f"pwned-{uuid.uuid4().hex}"
UNREADABLE = r"model\.(\w+\.)?safetensors is not a readable safetensors file"
BAD_CHECKPOINTS = [
    "pickle model.pt",
    "pickle renamed as the weights",
    "member climbing out with ..",
    "member with an absolute path",
    "zip bomb",
    "20 members",
    "damaged weights",
    "truncated weights",
    "NaN weights",
    "config that does not fit the weights",
    "not a zip",
]


def bad_checkpoint(kind: str, folder: Path, members: dict[str, bytes]) -> tuple[Path, str]:
    """A refused upload named mine.zip, like the model in use, and the message it must get."""
    path = folder / "mine.zip"
    marker = folder / MARKER
    if kind == "pickle model.pt":
        members = {"config.json": members["config.json"], "model.pt": pickle.dumps(WritesMarker(marker))}
        return write_zip(path, members), "pickle file, which can run code when loaded"
    if kind == "pickle renamed as the weights":
        return write_zip(path, with_weights(members, pickle.dumps(WritesMarker(marker)))), UNREADABLE
    if kind == "member climbing out with ..":
        members = {f"../../{MARKER}/config.json": members["config.json"], "model.safetensors": b"x"}
        return write_zip(path, members), "has an absolute path or '..'"
    if kind == "member with an absolute path":
        members = {f"{marker}/config.json": members["config.json"], "model.safetensors": b"x"}
        return write_zip(path, members), "has an absolute path or '..'"
    if kind == "zip bomb":
        return bomb_zip(path, members["config.json"]), "would unpack to 300 MB, more than the 256 MB limit"
    if kind == "20 members":
        folders = {f"folder{i}/": b"" for i in range(20 - len(members))}
        return write_zip(path, {**members, **folders}), "the zip holds 20 entries"
    if kind == "damaged weights":
        name = model_weights(members)
        damaged = {**members, name: members[name][:-8] + bytes(8)}
        return write_zip(path, damaged), r"model\.(\w+\.)?safetensors does not match config\.json"
    if kind == "truncated weights":
        data = members[model_weights(members)]
        return write_zip(path, with_weights(members, data[: len(data) // 2])), UNREADABLE
    if kind == "NaN weights":
        return write_zip(path, nan_weights(members)), r"model\.safetensors: [\w.]+ holds NaN or inf"
    if kind == "config that does not fit the weights":
        return write_zip(path, wider_config(members)), "has shape .* the model needs|does not fit the model"
    assert kind == "not a zip", kind
    path.write_bytes(b"not a zip at all")
    return path, r"mine\.zip is not a readable \.zip file"


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_a_refused_checkpoint_gets_a_clear_message_and_the_model_in_use_is_untouched(
    owner, checkpoint_dir, tmp_path, kind
):
    user, _, picture = owner
    path, message = bad_checkpoint(kind, tmp_path, members_of(checkpoint_dir))
    with pytest.raises(AppError, match=f"This checkpoint was refused: .*({message})"):
        user.predict(handle_file(str(path)), api_name="/upload_checkpoint")
    # nothing ran, nothing was written outside the upload folder
    for place in (tmp_path, SESSIONS_ROOT, SESSIONS_ROOT.parent):
        assert not (place / MARKER).exists()
    # the model in use is still listed and draws the very same picture
    assert user.predict(MODEL_NAME, api_name="/describe_model")[0].startswith(f"**{MODEL_NAME}**")
    assert np.array_equal(drawing(user), picture)
