"""The 2D denoiser made visible: what a point model's network says at every place of the plane, at one t.

At a timestep t the network, given any point x as if it were x_t, guesses the clean point it came from,
pred_x0(x, t) (core.sampler_base.Sampler.predict_at: the same conversion the samplers use, from the model's eps, x0
or v output, on its own schedule, clipped to [-1, 1] when its sampler clips). The arrow at x is

    pred_x0(x, t) - x        the way (and the distance) to the clean data the denoiser guesses from x

drawn on a FIELD_SIDE x FIELD_SIDE grid over the plot (explorer.sampling_figures.denoiser_field_figure). At large
t every arrow points at the data's mean (x_t says almost nothing about x_0); as t falls they bend towards the
nearest part of the data set.

A finished sampling run of a 2D model keeps a `DenoiserField` (explorer.trajectory.Trajectory.field): the network,
its schedule, objective and clipping, and the class and guidance the run used, so the replay slider can ask for
the arrows at any saved step's t. For a 21 x 21 grid that is one network call on 441 points (a few ms on one CPU
core for the shipped MLPs), made in the slider's request thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from core.sampler_base import Sampler
from core.samplers import guided_output
from core.schedules import NoiseSchedule
from explorer.sampling_figures import alpha_bar_at

FIELD_SIDE = 21  # arrows per side of the grid
FIELD_EXTENT = 2.0  # the grid and the plot cover [-FIELD_EXTENT, FIELD_EXTENT]^2: the data and most of x_T


def field_grid(side: int = FIELD_SIDE, extent: float = FIELD_EXTENT) -> Tensor:
    """The grid's points, float32 [side * side, 2], row by row from (-extent, -extent) to (extent, extent)."""
    axis = torch.linspace(-extent, extent, side)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1)


@dataclass(frozen=True)
class FieldArrows:
    """The field at one t: the grid points and, at each, pred_x0 - x (float64 numpy [N, 2] both)."""

    t: float  # the network's timestep
    alpha_bar: float  # alpha-bar at t on the model's schedule
    points: np.ndarray  # (N, 2) where the arrows start
    arrows: np.ndarray  # (N, 2) pred_x0 - x at each

    @property
    def longest(self) -> float:
        """The length of the longest arrow (0 when the field is empty)."""
        return float(np.linalg.norm(self.arrows, axis=1).max()) if len(self.arrows) else 0.0


@dataclass(frozen=True)
class DenoiserField:
    """What computes a 2D model's field at any t: its network, schedule and objective, whether its sampler clips
    x0, and the class (None: without a class) and guidance scale of the run."""

    network: nn.Module
    schedule: NoiseSchedule
    objective: str
    clip_x0: bool = True
    label: int | None = None
    guidance: float = 1.0

    def pred_x0(self, x: Tensor, t: float) -> Tensor:
        """The network's guess of x_0 for points x [N, 2] taken as x_t at timestep t (whole, or fractional as Karras
        sigmas put it), as the sampler computes it (classifier-free guidance included)."""
        alpha_bar = float(alpha_bar_at(self.schedule, [t])[0])
        parameter = next(self.network.parameters())
        x = x.to(parameter.device, torch.float32)
        y = None if self.label is None else torch.full((x.shape[0],), self.label, device=x.device, dtype=torch.long)
        with torch.inference_mode():
            output = guided_output(self.network, x, t, y, self.guidance)
            converter = Sampler(self.schedule, objective=self.objective, clip_x0=self.clip_x0)
            pred_x0, _ = converter.predict_at(x, alpha_bar, output.float())
        return pred_x0

    def at(self, t: float, points: Tensor | None = None) -> FieldArrows:
        """The arrows pred_x0 - x at timestep t on `points` (default: `field_grid()`)."""
        x = field_grid() if points is None else points
        pred_x0 = self.pred_x0(x, t).double().cpu()
        alpha_bar = float(alpha_bar_at(self.schedule, [t])[0])
        start = x.double().cpu()
        return FieldArrows(float(t), alpha_bar, start.numpy(), (pred_x0 - start).numpy())


def run_field(
    network: nn.Module,
    schedule: NoiseSchedule,
    objective: str,
    clip_x0: bool,
    labels: Tensor | None,
    guidance: float,
) -> DenoiserField:
    """The field of a sampling run of a 2D model with these per-sample `labels`: one class for all -> that class
    and the run's guidance; no labels, or a different class per sample ("each class in turn") -> without a class."""
    label = None
    if labels is not None and len(labels) and bool((labels == labels[0]).all()):
        label = int(labels[0])
    return DenoiserField(network, schedule, objective, clip_x0, label, guidance if label is not None else 1.0)
