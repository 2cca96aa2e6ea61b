"""A 2D data set drawn by hand: points clicked or typed on a canvas that shows [-1, 1]^2, trained on like the toy
sets of core.toy_data.

Each click (or typed "x, y" line) adds a small cloud around that place (`cloud`: CLOUD_POINTS points, Gaussian with
the chosen spread, kept on the canvas) or, with spread 0, the one point. `parse_points` reads typed points and says
which line is wrong. `drawn_dataset` makes the training set: normalised the way the toy sets are (the bounding box
centred and scaled by one factor for both axes so its longer side spans [-1, 1]; shapes keep their proportions), so
every schedule, the clipping of predicted x_0 and the plots treat a drawing like the moons. Its description (stored
in a checkpoint's config.json as "dataset") carries the drawn points, so a model of a drawing shows it under its
samples wherever it is loaded.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from core.toy_data import PointDataset

DRAWING = "drawing"  # the data set's name (core.data.DATASET_NAMES)
CANVAS_EXTENT = 1.0  # the canvas shows [-CANVAS_EXTENT, CANVAS_EXTENT]^2
MIN_DRAWN_POINTS = 8  # fewer than this cannot be called a data set
MAX_DRAWN_POINTS = 3000
CLOUD_POINTS = 12  # points one click adds when the spread is above 0
MAX_SPREAD = 0.2
STORED_DECIMALS = 4  # the points in a checkpoint's description
_SEPARATOR = re.compile(r"[,;\s]+")


def off_canvas(x: float, y: float) -> str:
    """What is wrong with a point off the canvas (or not finite)."""
    limit = f"{CANVAS_EXTENT:g}"
    return f"({x:g}, {y:g}) is outside the canvas: x and y must be from -{limit} to {limit}"


def check_on_canvas(points: Tensor) -> None:
    """ValueError naming the first point outside the canvas (or not finite)."""
    bad = ~torch.isfinite(points).all(dim=1) | (points.abs() > CANVAS_EXTENT).any(dim=1)
    if bool(bad.any()):
        raise ValueError(f"the point {off_canvas(*points[int(bad.nonzero()[0, 0])].tolist())}")


def parse_points(text: str) -> Tensor:
    """Points typed one per line as "x, y" (or "x y", "x; y"; blank lines and lines starting with # are skipped)
    as float32 [N, 2]; ValueError saying which line is not two numbers, or which point is off the canvas."""
    if not isinstance(text, str):
        raise ValueError(f"points must be text, one 'x, y' per line, got {type(text).__name__}")
    points = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part for part in _SEPARATOR.split(line) if part]
        try:
            x, y = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"line {number}: {line[:40]!r} is not two numbers like '0.5, -0.2'") from None
        if not (math.isfinite(x) and math.isfinite(y)) or max(abs(x), abs(y)) > CANVAS_EXTENT:
            raise ValueError(f"line {number}: {off_canvas(x, y)}")
        points.append((x, y))
    if not points:
        raise ValueError("no points given: type one 'x, y' per line, for example 0.5, -0.2")
    return torch.tensor(points, dtype=torch.float32)


def cloud(center: tuple[float, float], spread: float, generator: torch.Generator) -> Tensor:
    """What one click at `center` adds: the point itself (spread 0), or CLOUD_POINTS points drawn from a Gaussian
    of standard deviation `spread` around it, kept on the canvas (float32 [n, 2])."""
    if not 0.0 <= spread <= MAX_SPREAD:
        raise ValueError(f"the spread must be from 0 to {MAX_SPREAD:g}, got {spread!r}")
    middle = torch.tensor([center], dtype=torch.float32)
    check_on_canvas(middle)
    if spread == 0.0:
        return middle
    offsets = torch.randn(CLOUD_POINTS, 2, generator=generator, dtype=torch.float32) * spread
    return (middle + offsets).clamp(-CANVAS_EXTENT, CANVAS_EXTENT)


def normalise(points: Tensor) -> Tensor:
    """The toy sets' convention: the bounding box centred at 0 and scaled by one factor for both axes so that its
    longer side spans [-1, 1] (a drawing of one spot is only centred)."""
    low, high = points.min(dim=0).values, points.max(dim=0).values
    half_side = float((high - low).max()) / 2
    centred = points - (low + high) / 2
    return centred / half_side if half_side > 1e-6 else centred


def drawing_digest(points: Tensor) -> str:
    """A short name of one drawing ("137 points, 3f2a9c1e"): equal drawings, equal digests."""
    digest = hashlib.sha256(points.detach().float().cpu().numpy().tobytes()).hexdigest()[:8]
    return f"{len(points)} points, {digest}"


@dataclass
class DrawnDataset(PointDataset):
    """A drawing as a training set (`drawn_dataset`); its description carries the points."""

    def describe(self) -> dict:
        points = [[round(v, STORED_DECIMALS) for v in point] for point in self.points.tolist()]
        return {**super().describe(), "points": points}


def drawn_dataset(points: Tensor) -> DrawnDataset:
    """The training set of drawn points (canvas coordinates, float [N, 2]): checked (MIN_DRAWN_POINTS to
    MAX_DRAWN_POINTS, on the canvas) and normalised (`normalise`); ValueError saying what is wrong."""
    points = torch.as_tensor(points, dtype=torch.float32)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"drawn points must be pairs (x, y), got shape {tuple(points.shape)}")
    if len(points) < MIN_DRAWN_POINTS:
        raise ValueError(
            f"draw at least {MIN_DRAWN_POINTS} points first (there are {len(points)}): click on the canvas, or type "
            "'x, y' lines"
        )
    if len(points) > MAX_DRAWN_POINTS:
        raise ValueError(f"a drawing has at most {MAX_DRAWN_POINTS} points, got {len(points)}: undo some clicks")
    check_on_canvas(points)
    return DrawnDataset(DRAWING, normalise(points))


def stored_drawing(description: dict) -> Tensor | None:
    """The (normalised) points a checkpoint's dataset description carries, or None when it is not a drawing."""
    if description.get("name") != DRAWING or not isinstance(description.get("points"), list):
        return None
    return torch.tensor(description["points"], dtype=torch.float32).reshape(-1, 2)
