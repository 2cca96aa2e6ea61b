"""A sampling run as the Sample tab replays it: for each saved network call, the state x_t, the predicted clean
sample x0 and the predicted noise, with the timesteps visited, so a slider can scrub through them and a GIF can be
made; and `step_pictures`, the same three pictures of a call as it happens. A guided run (a class-conditional model,
guidance scale != 1) also keeps each call's guidance direction, pred_x0 with the class minus pred_x0 without it
(core.sampler_base.Step.guidance_x0), as a picture: grey 0, white where the class adds ink (`guidance_picture`).

A run makes one network call per sampler step, except Heun: two per step (a predictor, then a corrector), one on the
last. Karras sigmas put the network at fractional timesteps (`format_t` writes them with one decimal).

A 2D model's run also keeps its `denoiser_field` (explorer.denoiser_field), which draws the network's arrows at
any saved call's t, with `points_seen`, the points the network was given at that call.

Images are kept as uint8 (what the page shows; noise as +-3 sigma, the guidance direction as +-GUIDANCE_RANGE), 2D
points as float32. Long runs keep an evenly
spaced subset of their calls (always the first and the last) so that one user's trajectory stays under
`MAX_TRAJECTORY_BYTES`; `saved` lists which call indices were kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.imaging import to_uint8
from core.sampler_base import Step
from core.schedules import NoiseSchedule
from explorer.images import (
    DISPLAY_SIDE,
    NOISE_SIGMAS,
    grid_picture,
    noise_picture,
    points_picture,
    side_by_side,
    tile,
    write_gif,
)

MAX_SAVED_STEPS = 250
GIF_SIDE = 256  # pixels per picture in a GIF frame (smaller than on the page: noisy frames compress badly)
MAX_TRAJECTORY_BYTES = 48 * 2**20
CLEAN = -1  # t_prev of the last step: the clean sample
GUIDANCE_RANGE = 1.0  # guidance pictures: a change of pred_x0 by -1..+1 (half the pixel range) is black..white


def format_t(t: float) -> str:
    """A timestep as the page writes it: whole ones as they are ("412"), fractional ones with one decimal
    ("412.3")."""
    return f"{t:g}" if float(t).is_integer() else f"{t:.1f}"


def step_pictures(step: Step, is_points: bool, reference: Tensor | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The live pictures of one step as it happens: x_t, predicted x0, predicted noise (2D points: over the
    `reference` data set)."""
    if is_points:
        return tuple(points_picture(x.float().cpu(), reference) for x in (step.x_t, step.pred_x0, step.pred_eps))
    return grid_picture(step.x_t), grid_picture(step.pred_x0), noise_picture(step.pred_eps)


def saved_step_indices(num_calls: int, max_saved: int = MAX_SAVED_STEPS) -> list[int]:
    """Which of num_calls call indices a trajectory keeps: all of them, or max_saved evenly spaced ones
    including the first and the last."""
    if num_calls <= max_saved:
        return list(range(num_calls))
    return sorted({int(i) for i in np.linspace(0, num_calls - 1, max_saved).round()})


def max_saved_for(x_T: Tensor, is_points: bool) -> int:
    """The most calls that fit the byte budget for this batch (x_t, x0, noise and a guided run's direction)."""
    per_value = 4 if is_points else 1
    per_step = 4 * x_T.numel() * per_value
    return max(2, min(MAX_SAVED_STEPS, MAX_TRAJECTORY_BYTES // per_step))


@dataclass
class Trajectory:
    """The record of one sampling run (see the module docstring)."""

    title: str  # e.g. "DDIM, 50 steps, eta 0, leading spacing"
    x_T: Tensor  # the starting noise, float32 on the CPU
    num_calls: int  # network calls of the whole run
    is_points: bool
    reference: Tensor | None = None  # 2D models: the true data, drawn under the points
    schedule: NoiseSchedule | None = None  # the model's (for the alpha-bar figure)
    dataset: str | None = None  # what the model was trained on (for scoring its samples)
    num_steps: int = 0  # sampler steps (0: one per call)
    sampler: str = ""  # the sampler's name on the page, e.g. "Heun" (for the captions)
    timesteps: list[float] = field(default_factory=list)  # every t the network was evaluated at, in order
    sampler_steps: list[int] = field(default_factory=list)  # the sampler step of every call, in order
    saved: list[int] = field(default_factory=list)  # call indices kept below
    x_t: list[np.ndarray] = field(default_factory=list)
    pred_x0: list[np.ndarray] = field(default_factory=list)
    pred_eps: list[np.ndarray] = field(default_factory=list)
    guidance_x0: list[np.ndarray | None] = field(default_factory=list)  # None where the call was not guided
    t_saved: list[float] = field(default_factory=list)  # t of each saved call
    t_prev_saved: list[float] = field(default_factory=list)  # noise level of each saved x_t (-1 = clean)
    final: Tensor | None = None  # the finished sample, float32 on the CPU
    seconds: float = 0.0  # wall time of the network and sampler steps
    denoiser_field: Any = None  # 2D models: explorer.denoiser_field.DenoiserField, the network's arrows at any t

    def __post_init__(self) -> None:
        self.num_steps = self.num_steps or self.num_calls
        self._keep = set(saved_step_indices(self.num_calls, max_saved_for(self.x_T, self.is_points)))

    def _store(self, x: Tensor, scale: float = 1.0) -> np.ndarray:
        if self.is_points:
            return x.detach().float().cpu().numpy().copy()
        return to_uint8(x / scale)

    def add(self, step: Step) -> None:
        """Record one network call of core.samplers.denoise (kept if it is one of the saved indices)."""
        self.timesteps.append(step.t)
        self.sampler_steps.append(step.sampler_step)
        if step.t_prev == CLEAN:
            self.final = step.x_t.detach().float().cpu()
        if step.index not in self._keep:
            return
        self.saved.append(step.index)
        self.t_saved.append(step.t)
        self.t_prev_saved.append(step.t_prev)
        self.x_t.append(self._store(step.x_t))
        self.pred_x0.append(self._store(step.pred_x0))
        self.pred_eps.append(self._store(step.pred_eps, NOISE_SIGMAS))
        direction = step.guidance_x0
        self.guidance_x0.append(None if direction is None else self._store(direction, GUIDANCE_RANGE))

    @property
    def complete(self) -> bool:
        return self.final is not None

    def snapshot(self) -> Trajectory:
        """A copy of the record so far that later steps do not change (a run shared with other users goes on
        after one of them pressed Stop)."""
        lists = ("timesteps", "sampler_steps", "saved", "x_t", "pred_x0", "pred_eps", "guidance_x0", "t_saved")
        lists += ("t_prev_saved",)
        return dataclasses.replace(self, **{name: list(getattr(self, name)) for name in lists})

    def __len__(self) -> int:
        """Number of saved calls (the slider's range)."""
        return len(self.saved)

    def call_name(self, call: int) -> str:
        """Which call this is: "step 7 of 50" when every step makes one call, else e.g. "call 7 of 9 (Heun step 4
        of 5, corrector)" (the predictor and corrector of a step are told apart once both are recorded)."""
        if self.num_calls == self.num_steps:
            return f"step {call + 1} of {self.num_steps}"
        step = self.sampler_steps[call]
        role = ""
        if self.sampler_steps.count(step) == 2:  # Heun: a predictor, then a corrector
            role = ", predictor" if call == self.sampler_steps.index(step) else ", corrector"
        return f"call {call + 1} of {self.num_calls} ({self.sampler} step {step + 1} of {self.num_steps}{role})"

    def caption(self, i: int) -> str:
        """What saved call i did: e.g. "step 7 of 50: network at t = 412.3, now x at t = 300"."""
        t_prev = self.t_prev_saved[i]
        level = "the clean sample" if t_prev == CLEAN else f"x at t = {format_t(t_prev)}"
        return f"{self.call_name(self.saved[i])}: network at t = {format_t(self.t_saved[i])}, now {level}"

    def pictures(self, i: int, side: int = DISPLAY_SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three pictures of saved step i: x_t, predicted x0, predicted noise (about `side` pixels wide)."""
        if self.is_points:
            return tuple(  # type: ignore[return-value]
                points_picture(torch.from_numpy(a[i]), self.reference, size=side)
                for a in (self.x_t, self.pred_x0, self.pred_eps)
            )
        return tile(self.x_t[i], side), tile(self.pred_x0[i], side), tile(self.pred_eps[i], side)

    def guidance_picture(self, i: int, side: int = DISPLAY_SIDE) -> np.ndarray | None:
        """Saved step i's guidance direction as a grid picture (grey 0, white: the class adds ink there, black: it
        takes ink away), or None when that call was not guided (or the model draws 2D points)."""
        direction = self.guidance_x0[i] if i < len(self.guidance_x0) else None
        return None if direction is None or self.is_points else tile(direction, side)

    def paths(self) -> np.ndarray:
        """2D models: the saved states as paths, float32 [points, saved steps + 1, 2], starting at x_T."""
        if not self.is_points:
            raise ValueError("paths exist for 2D models only")
        return np.stack([self.x_T.numpy(), *self.x_t], axis=1)

    def points_seen(self, i: int) -> np.ndarray | None:
        """2D models: the points the network was given at saved call i (x_T for the first call, else the state after
        the call before it), or None when that call was not saved (long runs keep a subset)."""
        call = self.saved[i]
        if call == 0:
            return self.x_T.numpy()
        return self.x_t[i - 1] if i > 0 and self.saved[i - 1] == call - 1 else None

    def write_gif(self, path: str | Path, frame_ms: int = 80) -> Path:
        """An animated GIF with one frame per saved call: x_t and predicted x0 side by side, captioned."""
        frames = []
        for i in range(len(self)):
            x_t, x0, _ = self.pictures(i, GIF_SIDE)
            frames.append(side_by_side([x_t, x0], f"{self.title} | {self.caption(i)} | left x_t, right predicted x0"))
        return write_gif(frames, path, frame_ms=frame_ms)
