"""The guidance sweep: one class drawn from the same x_T and seed at guidance scales 0, 1, 2, 4 and 8, and the grid
that shows them, a labelled row per scale.

Each row is an ordinary Sample run (explorer.sampling_run.sample_request) of the same checked request with only the
guidance scale changed: the same sampler, steps, spacing, x_T and noise along the way. So row s is exactly what the
Sample button draws at guidance s with that seed and number of images, and any difference between two rows is the
guidance's. Scale 0 ignores the class (the model's "no class" label: its unconditional half), scale 1 is the plain
class-conditional model, and above 1 classifier-free guidance (Ho & Salimans 2022) pushes past it, away from the
unconditional prediction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from core.imaging import make_grid, to_uint8
from core.sampler_base import Step
from explorer.images import enlarge
from explorer.models import ModelEntry
from explorer.sampling_run import SampleRequest, sample_request
from explorer.trajectory import Trajectory

SWEEP_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)
MAX_COLUMNS = 10  # samples per row: with "each class in turn", one of each digit
ROW_WIDTH = 640  # pixels of a row's samples, about (enlarged by a whole factor, so pixels stay sharp)
LABEL_WIDTH = 190  # pixels left of each row for its label
FONT_SIZE = 18
TOP = 30  # white above the first row, where the page puts the picture's label
NEEDS_CLASSES = (
    "Guidance needs a class-conditional model (such as **Digits by class (pretrained)**): this model has no "
    "classes, so there is no class to push toward."
)
NEEDS_A_CLASS = "Choose a class (or each class in turn) first: guidance pushes toward a class."


def sweep_request(entry: ModelEntry, request: SampleRequest) -> SampleRequest:
    """The checked request every row of the sweep shares (at most MAX_COLUMNS samples; the rows set the guidance),
    or ValueError saying why this model or request cannot be swept."""
    if entry.num_classes is None:
        raise ValueError(NEEDS_CLASSES.replace("**", ""))
    if request.label is None:
        raise ValueError(NEEDS_A_CLASS)
    return dataclasses.replace(request, count=min(request.count, MAX_COLUMNS))


def row_request(request: SampleRequest, scale: float) -> SampleRequest:
    """Row `scale` of a sweep: the shared request at that guidance scale."""
    return dataclasses.replace(request, guidance=float(scale))


def sweep_steps(
    entry: ModelEntry,
    request: SampleRequest,
    *,
    compute: Callable[[Callable[[], Any]], Any] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, Step, Trajectory]]:
    """Run the rows one after another (a request from `sweep_request`), yielding (row, step, that row's trajectory
    so far) at every network call; each row's network steps run through `compute` and end early when stop() says
    so (explorer.sampling_run.run_sampling)."""
    for row, scale in enumerate(SWEEP_SCALES):
        for step, trajectory in sample_request(entry, row_request(request, scale), compute=compute, stop=stop):
            yield row, step, trajectory


def scale_label(scale: float) -> str:
    """A row's label: "guidance 0 (no class)", "guidance 1 (plain)", "guidance 4"."""
    meaning = {0.0: " (no class)", 1.0: " (plain)"}.get(float(scale), "")
    return f"guidance {scale:g}{meaning}"


def _rgb(grid: np.ndarray) -> np.ndarray:
    return np.repeat(grid, 3, axis=2) if grid.shape[2] == 1 else grid


def sweep_picture(rows: list[Tensor], scales: tuple[float, ...] = SWEEP_SCALES) -> np.ndarray:
    """The finished rows (each [n, C, H, W] in [-1, 1], the same n) as one uint8 RGB picture: a row of samples
    per guidance scale, its label on the left, on white; rows not drawn yet are left out."""
    if not rows:
        raise ValueError("a sweep picture needs at least one finished row")
    strips = []
    for samples in rows:
        grid = make_grid(to_uint8(samples), ncols=len(samples), padding=1, pad_value=128)  # (H', W', C)
        strips.append(_rgb(enlarge(grid, ROW_WIDTH)))
    height, width = strips[0].shape[:2]
    gap = 6
    canvas = Image.new("RGB", (LABEL_WIDTH + width, TOP + len(strips) * (height + gap) - gap), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=FONT_SIZE)
    for row, (strip, scale) in enumerate(zip(strips, scales, strict=False)):
        top = TOP + row * (height + gap)
        canvas.paste(Image.fromarray(strip), (LABEL_WIDTH, top))
        draw.text((6, top + (height - FONT_SIZE) // 2), scale_label(scale), fill="black", font=font)
    return np.asarray(canvas)
