"""Datasets by name (core/data.py): torchvision sets read from small files in their real formats written here, the
offline message, the user's own pictures from a folder or a zip (with the zip refusals), and the 2D toy sets.

No test touches the network: `urllib.request.urlopen`, which torchvision's downloads go through, is replaced by one
that fails like a machine without network, for every test in this file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from core import image_files
from core.data import (
    DATA_ENV,
    DATASET_NAMES,
    DatasetError,
    data_root,
    load_dataset,
)
from core.image_files import ArchiveError
from core.toy_data import TOY_DATASET_NAMES, PointDataset, load_toy
from core.training import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OFFLINE = "could not download {} (no network?); the bundled 'mnist5k' needs no download"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every download attempt fails at once, as on a machine without network."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------------------
# torchvision: MNIST and Fashion-MNIST (idx-ubyte files), CIFAR-10 (pickled batches)


def write_idx(path: Path, array: np.ndarray, packed: bool = False) -> None:
    """An idx-ubyte file as LeCun's MNIST files are: magic 0x0000 08 ndim, big-endian sizes, then the bytes."""
    data = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if packed:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fp:
            fp.write(data)
    else:
        path.write_bytes(data)


def write_mnist_like(root: Path, class_name: str, packed: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """torchvision's layout <root>/<class_name>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    rng = np.random.default_rng(0)
    written = {}
    for prefix, count in (("train", 6), ("t10k", 4)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = np.arange(count, dtype=np.uint8) % 10
        write_idx(root / class_name / "raw" / f"{prefix}-images-idx3-ubyte", images, packed)
        write_idx(root / class_name / "raw" / f"{prefix}-labels-idx1-ubyte", labels, packed)
        written[prefix] = (images, labels)
    return written


def test_mnist_reads_torchvision_idx_files_and_pads_to_32(tmp_path):
    written = write_mnist_like(tmp_path, "MNIST")
    train = load_dataset("mnist", split="train", root=tmp_path)
    assert train.images.shape == (6, 1, 32, 32) and train.images.dtype == torch.float32
    assert train.num_classes == 10 and train.labels.tolist() == written["train"][1].tolist()
    expected = torch.from_numpy(written["train"][0]).float() / 127.5 - 1
    assert torch.allclose(train.images[:, 0, 2:30, 2:30], expected)
    assert torch.all(train.images[:, :, :2] == -1) and train.images.min() >= -1 and train.images.max() <= 1
    test = load_dataset("mnist", split="test", root=tmp_path, image_size=28)
    assert test.images.shape == (4, 1, 28, 28) and test.labels.tolist() == [0, 1, 2, 3]
    both = load_dataset("mnist", split="all", root=tmp_path)
    assert len(both) == 10 and torch.equal(both.images[:6], train.images)


def test_fashion_mnist_from_gz_files_in_the_folder_the_environment_names(tmp_path, monkeypatch):
    written = write_mnist_like(tmp_path, "FashionMNIST", packed=True)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root() == tmp_path
    data = load_dataset("fashion_mnist", split="train")
    assert data.images.shape == (6, 1, 32, 32) and data.name == "fashion_mnist"
    expected = torch.from_numpy(written["train"][0]).float() / 127.5 - 1
    assert torch.allclose(data.images[:, 0, 2:30, 2:30], expected)
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()  # unpacked next to the .gz
    assert not list(tmp_path.rglob("*.tmp"))


def test_default_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_root() == tmp_path / "ddpm-explorer" / "datasets"
    assert data_root("~/elsewhere") == Path.home() / "elsewhere"


def write_cifar10(root: Path) -> tuple[np.ndarray, list[int]]:
    """cifar-10-batches-py/data_batch_1..5, test_batch (dicts: data uint8 [N, 3072] as R, G, B planes; labels) and
    batches.meta, pickled as the official files are. Returns the first training batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 2)]
        with open(folder / name, "wb") as fp:
            pickle.dump({"batch_label": name, "data": data, "labels": labels, "filenames": ["a", "b"]}, fp, protocol=2)
        first = first or (data, labels)
    with open(folder / "batches.meta", "wb") as fp:
        pickle.dump({"label_names": [f"class {i}" for i in range(10)], "num_vis": 3072}, fp, protocol=2)
    return first


def trust_written_cifar_files(monkeypatch, root: Path) -> None:
    """torchvision's CIFAR10 checks every batch file against the MD5 of the official one before unpickling it (and
    would otherwise download the archive). These files are small stand-ins written by the test, so the test puts
    their own MD5s into CIFAR10's checksum table: the real integrity check still runs, and passes."""
    folder = root / "cifar-10-batches-py"
    cifar = torchvision.datasets.CIFAR10

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cifar, "train_list", [[name, md5(name)] for name, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [[name, md5(name)] for name, _ in cifar.test_list])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5(cifar.meta["filename"])})


def test_cifar10_reads_pickled_batches_as_rgb(tmp_path, monkeypatch):
    data, labels = write_cifar10(tmp_path)
    trust_written_cifar_files(monkeypatch, tmp_path)
    train = load_dataset("cifar10", split="train", root=tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and train.num_classes == 10 and train.labels.shape == (10,)
    assert train.labels[:2].tolist() == labels
    first = torch.from_numpy(data[0].reshape(3, 32, 32)).float() / 127.5 - 1  # the R, G, B planes
    assert torch.allclose(train.images[0], first)
    assert load_dataset("cifar10", split="test", root=tmp_path, image_size=16).images.shape == (2, 3, 16, 16)


def test_cifar10_files_that_fail_the_integrity_check_are_never_unpickled(tmp_path, monkeypatch):
    write_cifar10(tmp_path)  # not the official files: their MD5s do not match
    unpickled = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: unpickled.append(1))
    with pytest.raises(DatasetError, match=re.escape(OFFLINE.format("CIFAR-10"))):
        load_dataset("cifar10", root=tmp_path)  # torchvision tries to download the real archive, offline here
    assert not unpickled


@pytest.mark.parametrize(
    ("name", "title"), [("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST"), ("cifar10", "CIFAR-10")]
)
def test_offline_without_files_names_the_bundled_dataset(tmp_path, name, title):
    with pytest.raises(DatasetError) as caught:
        load_dataset(name, root=tmp_path / "empty")
    message = str(caught.value)
    assert message.startswith(OFFLINE.format(title)), message
    assert str(tmp_path / "empty") in message and DATA_ENV in message


def test_a_failing_dataset_class_gives_the_same_message(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", broken)
    with pytest.raises(DatasetError, match=r"could not download MNIST .*Error downloading"):
        load_dataset("mnist", root=tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# the user's own pictures: folders


def three_bands(size: tuple[int, int], horizontal: bool) -> Image.Image:
    """Red | green | blue thirds (left to right, or top to bottom): a center crop keeps only the green."""
    width, height = size
    array = np.zeros((height, width, 3), dtype=np.uint8)
    third = (width if horizontal else height) // 3
    for channel in range(3):
        if horizontal:
            array[:, channel * third : (channel + 1) * third, channel] = 255
        else:
            array[channel * third : (channel + 1) * third, :, channel] = 255
    return Image.fromarray(array)


def write_pictures(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"pic{i:02d}.{['png', 'jpg', 'bmp', 'webp'][i % 4]}"
        three_bands((90, 30) if i % 2 else (30, 90), horizontal=bool(i % 2)).save(path, quality=95)
        paths.append(path)
    return paths


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int = 8000, height: int = 7000) -> bytes:
    """A real 1-bit PNG of 56 megapixels that takes a few kilobytes: over the 50 MP limit."""
    rows = zlib.compress((b"\x00" * (1 + (width + 7) // 8)) * height, 9)
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def test_folder_pictures_are_center_cropped_resized_and_colour(tmp_path):
    write_pictures(tmp_path / "photos", 6)
    write_pictures(tmp_path / "photos" / "more", 4, start=6)  # subfolders are read too
    (tmp_path / "photos" / ".hidden.png").write_bytes(b"ignored")
    data = load_dataset("folder", path=tmp_path / "photos", image_size=16)
    assert data.images.shape == (10, 3, 16, 16) and data.images.dtype == torch.float32
    assert data.labels is None and data.num_classes is None and data.skipped == ()
    assert data.source == "photos" and data.describe()["kind"] == "images"
    # only the green middle third survives the center crop, whichever way the picture is long
    mean = data.images.mean(dim=(2, 3))  # (N, 3)
    assert torch.all(mean[:, 1] > 0.9) and torch.all(mean[:, [0, 2]] < -0.9), mean
    assert data.images.min() >= -1 and data.images.max() <= 1


def test_grayscale_pictures_give_one_channel_unless_asked(tmp_path):
    for i in range(8):
        Image.new("L", (20 + i, 20), 40 * (i % 6)).save(tmp_path / f"{i}.png")
    assert load_dataset("folder", path=tmp_path, image_size=8).channels == 1
    forced = load_dataset("folder", path=tmp_path, image_size=8, channels=3)
    assert forced.channels == 3 and torch.equal(forced.images[:, 0], forced.images[:, 2])
    Image.new("RGB", (20, 20), (255, 0, 0)).save(tmp_path / "red.png")
    assert load_dataset("folder", path=tmp_path, image_size=8).channels == 3  # one colour picture: all colour


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    write_pictures(tmp_path, 8)
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "broken.png").write_bytes((tmp_path / "pic00.png").read_bytes()[:60])
    (tmp_path / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (tmp_path / "bomb.png").write_bytes(huge_png())
    os.mkfifo(tmp_path / "pipe.png")  # reading it would wait forever
    (tmp_path / "endless.png").symlink_to("/dev/zero")  # reading it would never end
    data = load_dataset("folder", path=tmp_path, image_size=8)
    assert len(data) == 8
    reasons = dict(data.skipped)
    assert set(reasons) == {"notes.txt", "broken.png", "drawing.svg", "bomb.png", "pipe.png", "endless.png"}
    assert reasons["pipe.png"] == reasons["endless.png"] == "not a regular file"
    assert "could not read this image" in reasons["broken.png"]
    assert "format SVG is not accepted" in reasons["drawing.svg"]
    assert "too large: 8000x7000 pixels" in reasons["bomb.png"]


def test_too_few_readable_pictures_say_how_many(tmp_path):
    write_pictures(tmp_path, 5)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DatasetError) as caught:
        load_dataset("folder", path=tmp_path, image_size=8)
    message = str(caught.value)
    assert "holds 7 file(s), of which 5 readable picture(s); at least 8 are needed" in message
    assert "broken.jpg: could not read this image" in message and "empty.png" in message


def test_folder_options_and_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_dataset("folder", path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs path="):
        load_dataset("folder")
    with pytest.raises(ValueError, match="no held-out split"):
        load_dataset("folder", path=tmp_path, split="test")
    with pytest.raises(ValueError, match="channels must be 1, 3 or None"):
        load_dataset("folder", path=tmp_path, channels=2)
    with pytest.raises(ValueError, match=r"option\(s\) path do not apply to dataset 'mnist5k'"):
        load_dataset("mnist5k", path=tmp_path)
    with pytest.raises(ValueError, match=r"option\(s\) n, seed do not apply"):
        load_dataset("cifar10", n=5, seed=1)
    (tmp_path / "data.zip").write_bytes(b"PK but not a zip")
    with pytest.raises(ArchiveError, match=r"neither a folder nor a \.zip"):
        load_dataset("folder", path=tmp_path / "data.zip")


def test_a_folder_of_pictures_trains(tmp_path):
    write_pictures(tmp_path / "photos", 8)
    config = TrainConfig(
        dataset="folder",
        data_path=str(tmp_path / "photos"),
        image_size=16,
        steps=2,
        batch_size=4,
        device="cpu",
        num_threads=1,
    )
    trainer = Trainer(config)
    records = list(trainer.run())
    assert len(records) == 2 and trainer.checkpoint_config()["dataset"]["channels"] == 3
    with pytest.raises(ValueError, match="needs data_path"):
        Trainer(TrainConfig(dataset="folder", steps=1, device="cpu"))


# ---------------------------------------------------------------------------------------------------------------
# the user's own pictures: zip archives


def picture_bytes(i: int) -> bytes:
    """A PNG of red | green | blue bands, wide or (odd i) tall."""
    buffer = io.BytesIO()
    three_bands((90, 30), horizontal=True).rotate(90 * (i % 2), expand=True).save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The zip lives in tmp_path/in; the working directory is tmp_path/cwd; both are checked to stay unchanged."""
    (tmp_path / "in").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def test_zip_of_pictures_is_read_in_memory(workdir):
    members = {f"holiday/day{i}/p{i}.png": picture_bytes(i) for i in range(9)}
    members["holiday/"] = b""  # a directory entry
    members["__MACOSX/holiday/._p0.png"] = b"resource fork"
    members["holiday/readme.txt"] = b"hello"
    archive = write_zip(workdir / "in" / "photos.zip", members)
    before = tree(workdir)
    data = load_dataset("folder", path=archive, image_size=8)
    assert data.images.shape == (9, 3, 8, 8) and data.source == "photos.zip"
    assert dict(data.skipped).keys() == {"holiday/readme.txt"}
    assert torch.all(data.images.mean(dim=(2, 3))[:, 1] > 0.9)  # the green middle, center-cropped
    assert tree(workdir) == before  # nothing unpacked anywhere


@pytest.mark.parametrize(
    "name", ["../evil.png", "a/../../evil.png", "/tmp/evil.png", "a\\..\\..\\evil.png", "C:/evil.png"]
)
def test_zip_members_that_climb_out_or_are_absolute_refuse_the_archive(workdir, name):
    members = {f"p{i}.png": picture_bytes(i) for i in range(9)}
    members[name] = picture_bytes(0)
    archive = write_zip(workdir / "in" / "evil.zip", members)
    assert name in zipfile.ZipFile(archive).namelist()  # the hostile name really is in the archive
    before = tree(workdir)
    with pytest.raises(ArchiveError, match=re.escape("has an absolute path or '..'")):
        load_dataset("folder", path=archive, image_size=8)
    assert tree(workdir) == before
    assert not (workdir / "evil.png").exists() and not Path("/tmp/evil.png").exists()


def test_zip_with_too_many_members_is_refused_before_it_is_parsed(workdir, monkeypatch):
    archive = workdir / "in" / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for i in range(image_files.MAX_FILES + 1):
            zf.writestr(f"f{i}.png", b"")
    parsed = []
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: parsed.append(1))  # parses the directory when built
    with pytest.raises(ArchiveError, match="more than 10,000 files"):
        load_dataset("folder", path=archive, image_size=8)
    assert not parsed


def test_zip_bomb_is_refused_from_its_declared_sizes(workdir, monkeypatch):
    monkeypatch.setattr(image_files, "MAX_ARCHIVE_BYTES", 2**20)  # 1 MB instead of 1 GB, for a fast test
    members = {f"p{i}.png": picture_bytes(i) for i in range(9)}
    members["zeros.png"] = bytes(2 * 2**20)  # 2 MB of zeros deflate to about 2 KB
    archive = write_zip(workdir / "in" / "bomb.zip", members)
    assert archive.stat().st_size < 50_000
    read = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: read.append(1))
    with pytest.raises(ArchiveError, match=r"would unpack to 2 MB.*zip bomb"):
        load_dataset("folder", path=archive, image_size=8)
    assert not read  # refused before a single member was decompressed


def test_a_member_larger_than_its_declared_size_is_cut_and_skipped(workdir):
    """zipfile stops at the size the directory declares and then fails the CRC: a lying header cannot unpack more."""
    members = {f"p{i}.png": picture_bytes(i) for i in range(8)}
    members["liar.png"] = bytes(100_000)
    archive = write_zip(workdir / "in" / "liar.zip", members)
    raw = bytearray(archive.read_bytes())
    central = raw.rfind(b"liar.png") - 46  # the last mention is in the central directory, after a 46-byte header
    assert raw[central : central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", raw, central + 24, 1000)  # declare 1,000 bytes uncompressed
    archive.write_bytes(bytes(raw))
    data = load_dataset("folder", path=archive, image_size=8)
    assert len(data) == 8 and "liar.png" in dict(data.skipped)


def test_zip_with_too_few_pictures(workdir):
    archive = write_zip(workdir / "in" / "few.zip", {f"p{i}.png": picture_bytes(i) for i in range(3)})
    with pytest.raises(DatasetError, match=r"few.zip holds 3 file\(s\), of which 3 readable picture\(s\); at least 8"):
        load_dataset("folder", path=archive, image_size=8)


# ---------------------------------------------------------------------------------------------------------------
# 2D toy sets


@pytest.mark.parametrize("name", TOY_DATASET_NAMES)
def test_toy_sets_shape_range_and_seeds(name):
    data = load_dataset(name, n=3000, seed=7)
    assert isinstance(data, PointDataset) and data.kind == "points" and data.name == name
    assert data.points.shape == (3000, 2) and data.points.dtype == torch.float32 and data.dim == 2
    assert data.points.abs().max() < 1.3 and data.points.abs().max() > 0.8  # about [-1, 1], like images
    assert data.points.mean(0).abs().max() < 0.25  # centered
    assert torch.equal(load_dataset(name, n=3000, seed=7).points, data.points)  # reproducible
    assert not torch.allclose(load_dataset(name, n=3000, seed=8).points, data.points)  # seeds differ
    test = load_dataset(name, split="test", n=3000, seed=7)
    assert not torch.allclose(test.points, data.points)  # held-out points are a fresh draw
    both = load_dataset(name, split="all", n=3000, seed=7)
    assert torch.equal(both.points, torch.cat([data.points, test.points]))
    assert data.describe() == {"kind": "points", "name": name, "dim": 2, "num_classes": data.num_classes}
    if data.labels is not None:
        assert data.labels.dtype == torch.int64 and data.labels.shape == (3000,)
        assert torch.bincount(data.labels).tolist() == [3000 // data.num_classes] * data.num_classes


def test_toy_shapes_are_what_their_names_say():
    gaussians = load_dataset("eight_gaussians", n=800)
    centers = torch.stack([gaussians.points[gaussians.labels == k].mean(0) for k in range(8)])
    assert torch.allclose(centers.norm(dim=1), torch.full((8,), 0.8), atol=0.02)
    board = load_dataset("checkerboard", n=4000).points
    cells = torch.floor((board + 1) * 2).long()  # 4 x 4 cells of [-1, 1]^2
    assert torch.all((cells[:, 0] + cells[:, 1]) % 2 == 0)  # only the squares of one colour
    moons = load_dataset("moons", n=2000)
    assert moons.points[moons.labels == 0, 1].mean() > moons.points[moons.labels == 1, 1].mean()  # upper moon


def test_dataset_names_and_bad_sizes():
    assert DATASET_NAMES[:5] == ("mnist5k", "mnist", "fashion_mnist", "cifar10", "folder")
    assert set(TOY_DATASET_NAMES) == {"moons", "swiss_roll", "eight_gaussians", "checkerboard", "spiral"}
    with pytest.raises(ValueError, match=re.escape("n must be an integer in 1..1,000,000")):
        load_dataset("moons", n=0)
    with pytest.raises(ValueError, match="seed must be"):
        load_dataset("moons", seed=-1)
    with pytest.raises(ValueError, match="unknown dataset 'cifar100'; choose one of mnist5k, mnist, "):
        load_dataset("cifar100")
    with pytest.raises(ValueError, match="unknown toy data set 'circles'; choose one of moons, swiss_roll, "):
        load_toy("circles")
