"""The 2D toy point sets, drawn from a seed: "moons", "swiss_roll", "eight_gaussians", "checkerboard", "spiral".

Each set is a pure function `(n, generator) -> (points float32 [n, 2], labels int64 [n] or None)`; `load_toy(name,
split, n, seed)` draws a `PointDataset` (kind "points"; trained with core.toy.ToyMLP). Like images the points lie in
[-1, 1] (each set's bounding box centered and scaled by one factor for both axes, so shapes keep their proportions;
Gaussian noise may reach a little beyond), so every schedule, the clipping of predicted x_0 and the plots treat them
alike. Moons, eight_gaussians and spiral carry labels (which moon, gaussian or arm), so class-conditional toy models
work too.

Splits (`SPLITS`, shared with the image sets of core.data): "train" and "test" of one seed are independent streams
(`toy_seed`); "all" is both. core.data.load_dataset reaches these sets by name, next to the image datasets.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

SPLITS = ("train", "test", "all")
MAX_TOY_POINTS = 1_000_000
DEFAULT_TOY_POINTS = 10_000


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


@dataclass
class PointDataset:
    """Points as float32 [N, D] (D = 2 for the toy sets), labels as int64 [N] (or None), and what they are."""

    name: str
    points: Tensor
    labels: Tensor | None = None
    num_classes: int | None = None

    kind: ClassVar[str] = "points"

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def tensor(self) -> Tensor:
        """The training tensor (N, D)."""
        return self.points

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    def subset(self, count: int) -> PointDataset:
        """The first `count` items (for quick experiments and tests)."""
        labels = None if self.labels is None else self.labels[:count]
        return PointDataset(self.name, self.points[:count], labels, self.num_classes)

    def describe(self) -> dict:
        """The JSON-ready description stored in checkpoints."""
        return {"kind": self.kind, "name": self.name, "dim": self.dim, "num_classes": self.num_classes}


# ---------------------------------------------------------------------------------------------------------------
# the sets: each (n, generator) -> (points float32 [n, 2] in about [-1, 1], labels int64 [n] or None)


def moons(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles (scikit-learn's make_moons), noise 0.05 before scaling; label = moon."""
    labels = torch.arange(n) % 2
    theta = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
    outer = torch.stack([theta.cos(), theta.sin()], 1)
    inner = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], 1)
    x = torch.where(labels[:, None] == 0, outer, inner)
    x = x + 0.05 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return ((x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / 1.5).float(), labels  # x in [-1, 1]


def swiss_roll(n: int, generator: torch.Generator) -> tuple[Tensor, None]:
    """The 2D swiss roll (t cos t, t sin t), t uniform in [1.5 pi, 4.5 pi] (scikit-learn), noise 0.02 after scaling.
    Its bounding box, [-3 pi, 4 pi] x [-3.5 pi, 4.5 pi], is centered and scaled to [-7/8, 7/8] x [-1, 1]."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator, dtype=torch.float64))
    x = (torch.stack([t * t.cos(), t * t.sin()], 1) - 0.5 * math.pi) / (4 * math.pi)
    x = x + 0.02 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x.float(), None


def eight_gaussians(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Eight Gaussians (std 0.05) at radius 0.8, every 45 degrees; label = which one."""
    labels = torch.arange(n) % 8
    angle = labels.double() * (math.pi / 4)
    centers = 0.8 * torch.stack([angle.cos(), angle.sin()], 1)
    x = centers + 0.05 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x.float(), labels


def checkerboard(n: int, generator: torch.Generator) -> tuple[Tensor, None]:
    """Uniform on the 8 dark squares of a 4 x 4 board over [-1, 1]^2 (the FFJORD toy, scaled by 1/2)."""
    x1 = torch.rand(n, generator=generator, dtype=torch.float64) * 4 - 2
    x2 = (
        torch.rand(n, generator=generator, dtype=torch.float64)
        - 2 * torch.randint(0, 2, (n,), generator=generator).double()
    )
    x2 = x2 + torch.floor(x1) % 2
    return (torch.stack([x1, x2], 1) / 2).float(), None


def spiral(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two arms of an Archimedean spiral (radius r, angle 3 pi r, the second arm turned by pi), noise 0.02;
    label = arm."""
    labels = torch.arange(n) % 2
    r = torch.rand(n, generator=generator, dtype=torch.float64)
    angle = 3 * math.pi * r + math.pi * labels
    x = r[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
    x = x + 0.02 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x.float(), labels


ToyMaker = Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]]
TOY_DATASETS: dict[str, tuple[ToyMaker, int | None]] = {  # name -> (maker, number of label classes)
    "moons": (moons, 2),
    "swiss_roll": (swiss_roll, None),
    "eight_gaussians": (eight_gaussians, 8),
    "checkerboard": (checkerboard, None),
    "spiral": (spiral, 2),
}
TOY_DATASET_NAMES: tuple[str, ...] = tuple(TOY_DATASETS)


def toy_seed(name: str, split: str, seed: int) -> int:
    """The generator seed of one toy split: "train" and "test" of the same seed are independent streams."""
    digest = hashlib.sha256(f"{name}/{split}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def load_toy(name: str, split: str = "train", n: int = DEFAULT_TOY_POINTS, seed: int = 0) -> PointDataset:
    """`n` points of a toy set ("all": n of "train" then n of "test"), the same for the same seed."""
    check_split(split)
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {', '.join(TOY_DATASET_NAMES)}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TOY_POINTS:
        raise ValueError(f"n must be an integer in 1..{MAX_TOY_POINTS:,}, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in 0..2^63-1, got {seed!r}")
    make, num_classes = TOY_DATASETS[name]
    points, labels = [], []
    for part in ("train", "test") if split == "all" else (split,):
        generator = torch.Generator().manual_seed(toy_seed(name, part, seed))
        x, y = make(n, generator)
        points.append(x)
        labels.append(y)
    label_tensor = None if num_classes is None else torch.cat(labels).long()
    return PointDataset(name, torch.cat(points), label_tensor, num_classes)
