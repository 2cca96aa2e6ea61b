"""What the Train tab shows of one optimizer step (core.observed_step.ObservedStep): pure functions, no Gradio.

* `step_picture`: for pictures, a labelled grid of the first SHOWN samples, one column per sample headed by its t
  and footed by its loss, one row per tensor: the batch x0, the noise eps drawn, the network's input x_t, its
  prediction (in the objective's terms) and the x0 that prediction implies. Noise-like tensors (eps, and an eps or
  v prediction) map -3..+3 standard deviations to black..white (explorer.images.NOISE_SIGMAS), pictures -1..1. For
  2D points, the whole batch as four scatter panels: x0 over the data, eps, x_t and the implied x0.
* `step_alt_text`: the picture in words, for screen readers.
* `step_table`: the first SHOWN samples' numbers (t, alpha-bar_t, loss before and after; for points also the
  coordinates), exactly the values the step used.
* `step_summary`: the step in a few sentences: its number, learning rate (and whether it is still warming up),
  batch loss before and after.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from core.imaging import make_grid, to_uint8
from core.observed_step import ObservedStep
from explorer.images import NOISE_SIGMAS, points_picture

SHOWN = 8  # samples shown one by one (pictures and table rows)
TILE_SIDE = 84  # each picture is enlarged (whole factors) to about this many pixels
LABEL_WIDTH = 200
TEXT_HEIGHT = 26
PANEL_SIDE = 260  # each 2D panel
FONT_SIZE = 16
GAP = 6
NOISE_LIKE = {"eps": True, "x0": False, "v": True}  # is the objective's target noise-like (unit variance)?
TABLE_HEADERS = ("sample", "t", "alpha-bar_t", "loss before", "loss after")  # then, for 2D points, the coordinates
TARGET_NAMES = {"eps": "noise eps", "x0": "clean x0", "v": "velocity v = sqrt(alpha-bar) eps - sqrt(1 - alpha-bar) x0"}


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _rows(seen: ObservedStep) -> list[tuple[str, torch.Tensor, bool]]:
    """(label, tensor, noise-like) for each row of the picture, top to bottom."""
    objective = seen.objective
    return [
        ("x0: the batch", seen.x0, False),
        ("eps: noise drawn", seen.noise, True),
        ("x_t: network's input", seen.x_t, False),
        (f"prediction of {objective}", seen.output, NOISE_LIKE[objective]),
        ("x0 it implies", seen.pred_x0, False),
    ]


def _strip(images: torch.Tensor, noise_like: bool, factor: int) -> np.ndarray:
    """SHOWN pictures [N, C, H, W] side by side (uint8 RGB, white gaps), each enlarged `factor` times."""
    scaled = images / NOISE_SIGMAS if noise_like else images
    tiles = to_uint8(scaled)
    tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    strip = make_grid(tiles, ncols=len(tiles), padding=GAP, pad_value=255)
    return np.repeat(strip, 3, axis=2) if strip.shape[2] == 1 else strip


def _image_picture(seen: ObservedStep) -> np.ndarray:
    count = min(SHOWN, len(seen.x0))
    side = seen.x0.shape[-1]
    factor = max(1, TILE_SIDE // side)
    strips = [(label, _strip(tensor[:count], noise_like, factor)) for label, tensor, noise_like in _rows(seen)]
    height, width = strips[0][1].shape[:2]
    canvas = Image.new("RGB", (LABEL_WIDTH + width, 2 * TEXT_HEIGHT + len(strips) * height), "white")
    draw, font = ImageDraw.Draw(canvas), _font()
    column = side * factor + GAP
    for i in range(count):
        left = LABEL_WIDTH + GAP + i * column
        draw.text((left, 4), f"t = {int(seen.t[i])}", fill="black", font=font)
        bottom = TEXT_HEIGHT + len(strips) * height + 2
        draw.text((left, bottom), f"loss {float(seen.per_sample[i]):.3f}", fill="black", font=font)
    for row, (label, strip) in enumerate(strips):
        top = TEXT_HEIGHT + row * height
        canvas.paste(Image.fromarray(strip), (LABEL_WIDTH, top))
        draw.text((6, top + height // 2 - FONT_SIZE // 2), label, fill="black", font=font)
    return np.asarray(canvas)


def _points_picture(seen: ObservedStep, reference: torch.Tensor | None) -> np.ndarray:
    panels = [
        ("x0: the batch (grey: the data)", seen.x0, reference),
        ("eps: noise drawn", seen.noise, None),
        ("x_t: network's input", seen.x_t, None),
        ("x0 the prediction implies", seen.pred_x0, reference),
    ]
    pictures = [points_picture(points, background, size=PANEL_SIDE) for _, points, background in panels]
    canvas = Image.new("RGB", (len(panels) * (PANEL_SIDE + GAP), PANEL_SIDE + TEXT_HEIGHT), "white")
    draw, font = ImageDraw.Draw(canvas), _font()
    for i, ((label, _, _), picture) in enumerate(zip(panels, pictures, strict=True)):
        left = i * (PANEL_SIDE + GAP)
        canvas.paste(Image.fromarray(picture), (left, TEXT_HEIGHT))
        draw.text((left + 4, 4), label, fill="black", font=font)
    return np.asarray(canvas)


def step_picture(seen: ObservedStep, reference: torch.Tensor | None = None) -> np.ndarray:
    """The step as one uint8 RGB picture (see the module docstring); `reference`: the 2D data drawn under x0."""
    if seen.x0.ndim == 2:
        return _points_picture(seen, reference)
    return _image_picture(seen)


def step_alt_text(seen: ObservedStep) -> str:
    """The picture described in words (the image's alt text)."""
    count = min(SHOWN, len(seen.x0))
    timesteps = ", ".join(str(int(t)) for t in seen.t[:count])
    if seen.x0.ndim == 2:
        return (
            f"Training step {seen.step}: four scatter plots of the batch's {len(seen.x0)} points: the clean points x0, "
            f"the noise drawn, the noisy points x_t the network saw, and the clean points its prediction implies."
        )
    return (
        f"Training step {seen.step}: {count} pictures of the batch in columns, at timesteps {timesteps}. Rows: the "
        f"clean picture x0, the noise drawn, the noisy input x_t, the network's prediction of {seen.objective}, and "
        f"the clean picture that prediction implies. Under each column, its loss."
    )


def _point(values: torch.Tensor) -> str:
    return "(" + ", ".join(f"{float(v):+.2f}" for v in values) + ")"


def step_table(seen: ObservedStep) -> tuple[list[str], list[list[object]]]:
    """(headers, rows): one row for each of the first SHOWN samples, with exactly the step's values."""
    headers = list(TABLE_HEADERS)
    points = seen.x0.ndim == 2
    if points:
        headers += ["x0", "eps", "x_t", f"prediction of {seen.objective}", "implied x0"]
    rows = []
    for i in range(min(SHOWN, len(seen.x0))):
        row: list[object] = [
            i + 1,
            int(seen.t[i]),
            round(float(seen.alpha_bar[i]), 4),
            round(float(seen.per_sample[i]), 5),
            round(float(seen.per_sample_after[i]), 5),
        ]
        if points:
            row += [_point(tensor[i]) for tensor in (seen.x0, seen.noise, seen.x_t, seen.output, seen.pred_x0)]
        rows.append(row)
    return headers, rows


def step_summary(seen: ObservedStep, warmup_steps: int = 0) -> str:
    """A few sentences on the step (Markdown); `warmup_steps`: the run's learning-rate warm-up, said while it lasts."""
    change = seen.loss_after - seen.loss_before
    direction = "down" if change < 0 else "up" if change > 0 else "unchanged"
    what = "points" if seen.x0.ndim == 2 else "pictures"
    return (
        f"**Step {seen.step}** (learning rate {seen.lr:.3g}, gradient norm {seen.grad_norm:.3g}): the batch of "
        f"{len(seen.x0)} was noised at random timesteps t, the network predicted the "
        f"{TARGET_NAMES[seen.objective]} from each x_t, and one update of the weights moved the batch loss from "
        f"**{seen.loss_before:.4f}** to **{seen.loss_after:.4f}** ({direction} {abs(change):.2g}) on the very same "
        f"{what}, t and noise."
    ) + (
        f" The learning rate is still warming up: it grows to its peak over the first {warmup_steps} steps, so early "
        "steps move the loss only a little."
        if seen.step <= warmup_steps
        else ""
    )
