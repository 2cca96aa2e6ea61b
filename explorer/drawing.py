"""A user's own 2D drawing for the Train tab: the clicks (or typed points) so far, kept per session, and the canvas
picture they are drawn on.

The canvas is a square picture of CANVAS_PIXELS pixels showing [-1, 1]^2 (core.drawn_points.CANVAS_EXTENT), y up:
pixel (px, py), counted from the top-left corner, is the point at its centre (`pixel_to_plane`; `plane_to_pixel`
is the inverse). Each click is one stroke, a cloud of points or one point (core.drawn_points.cloud), drawn from a
generator seeded by the stroke's number, so the same clicks give the same points; Undo drops the last stroke.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from core.drawn_points import CANVAS_EXTENT, MAX_DRAWN_POINTS, cloud

CANVAS_PIXELS = 420
GRID_STEP = 0.25  # grid lines every quarter
POINT_RADIUS = 3  # pixels
POINT_COLOUR = (0, 114, 178)  # explorer.figures.PALETTE[0]
LAST_COLOUR = (213, 94, 0)  # the last stroke, so a click shows where it landed (PALETTE[3])
STROKE_SEED = 7919  # generator seed of stroke k: STROKE_SEED + k


def pixel_to_plane(px: float, py: float, size: int = CANVAS_PIXELS) -> tuple[float, float]:
    """The plane point at the centre of canvas pixel (px, py) (px to the right, py down from the top-left)."""
    x = -CANVAS_EXTENT + 2 * CANVAS_EXTENT * (px + 0.5) / size
    y = CANVAS_EXTENT - 2 * CANVAS_EXTENT * (py + 0.5) / size
    return x, y


def plane_to_pixel(x: float, y: float, size: int = CANVAS_PIXELS) -> tuple[float, float]:
    """The canvas pixel (fractional) whose centre is the plane point (x, y): the inverse of `pixel_to_plane`."""
    px = (x + CANVAS_EXTENT) / (2 * CANVAS_EXTENT) * size - 0.5
    py = (CANVAS_EXTENT - y) / (2 * CANVAS_EXTENT) * size - 0.5
    return px, py


@dataclass(eq=False)
class Drawing:
    """One user's drawing: a list of strokes (each a float32 [n, 2] tensor of canvas points)."""

    strokes: list[Tensor] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # clicks may arrive together

    def add(self, centers: list[tuple[float, float]], spread: float) -> int:
        """One stroke per centre (core.drawn_points.cloud with `spread`); returns how many points were added.
        ValueError (nothing added) when a centre is off the canvas or the drawing would pass MAX_DRAWN_POINTS."""
        with self.lock:
            made = [
                cloud(center, spread, torch.Generator().manual_seed(STROKE_SEED + len(self.strokes) + k))
                for k, center in enumerate(centers)
            ]
            added = sum(len(stroke) for stroke in made)
            if self.count + added > MAX_DRAWN_POINTS:
                raise ValueError(
                    f"the drawing would have {self.count + added} points, more than {MAX_DRAWN_POINTS}: undo or clear"
                )
            self.strokes.extend(made)
            return added

    def undo(self) -> bool:
        """Drop the last stroke; False when there was none."""
        with self.lock:
            return self.strokes.pop() is not None if self.strokes else False

    def clear(self) -> None:
        with self.lock:
            self.strokes.clear()

    @property
    def count(self) -> int:
        return sum(len(stroke) for stroke in self.strokes)

    def points(self) -> Tensor:
        """Every point, float32 [N, 2] in canvas coordinates (N may be 0)."""
        strokes = list(self.strokes)
        return torch.cat(strokes) if strokes else torch.zeros(0, 2)

    def picture(self, size: int = CANVAS_PIXELS) -> np.ndarray:
        """The canvas with the points on it (the last stroke in another colour)."""
        strokes = list(self.strokes)
        return canvas_picture(torch.cat(strokes[:-1]) if len(strokes) > 1 else None, strokes[-1:], size)


def canvas_picture(points: Tensor | None, last: list[Tensor] | None = None, size: int = CANVAS_PIXELS) -> np.ndarray:
    """The canvas (uint8 RGB, size x size): a light grid every GRID_STEP, the axes, two corners' coordinates, and
    `points` (then the `last` stroke in LAST_COLOUR) as dots."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    steps = round(2 * CANVAS_EXTENT / GRID_STEP)
    for k in range(steps + 1):
        value = -CANVAS_EXTENT + k * GRID_STEP
        px, py = plane_to_pixel(value, value, size)
        colour = (150, 150, 150) if abs(value) < 1e-9 else (228, 228, 228)
        draw.line([(px, 0), (px, size)], fill=colour)
        draw.line([(0, py), (size, py)], fill=colour)
    # two corners' coordinates (the top-left one sits under the picture's label)
    draw.text((4, size - 14), f"(-{CANVAS_EXTENT:g}, -{CANVAS_EXTENT:g})", fill=(110, 110, 110))
    draw.text((size - 40, 4), f"({CANVAS_EXTENT:g}, {CANVAS_EXTENT:g})", fill=(110, 110, 110))
    for group, colour in ((points, POINT_COLOUR), (torch.cat(last) if last else None, LAST_COLOUR)):
        if group is None:
            continue
        for x, y in group.tolist():
            px, py = plane_to_pixel(x, y, size)
            box = [px - POINT_RADIUS, py - POINT_RADIUS, px + POINT_RADIUS, py + POINT_RADIUS]
            draw.ellipse(box, fill=colour)
    return np.asarray(image)
