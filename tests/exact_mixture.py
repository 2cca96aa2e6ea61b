"""Scalar mixtures of Gaussians and their exact noise predictor, for the sampler tests (test_samplers_exact,
test_solvers_exact): run with it, a sampler must give back the mixture."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from core.noise_levels import schedule_sigmas
from core.schedules import NoiseSchedule


@dataclass(frozen=True)
class Mixture:
    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(w * m for w, m in zip(self.weights, self.means, strict=True))

    def central_moment(self, order: int) -> float:
        """E[(x - mean)^order] for order 2 or 4."""
        total = 0.0
        for w, m, s in zip(self.weights, self.means, self.stds, strict=True):
            d = m - self.mean
            total += w * (d**2 + s**2 if order == 2 else d**4 + 6 * d**2 * s**2 + 3 * s**4)
        return total

    @property
    def std(self) -> float:
        return math.sqrt(self.central_moment(2))

    def se_std(self, n: int) -> float:
        """Standard error of the sample std, sqrt((mu_4 - var^2) / (4 var n)); sigma / sqrt(2n) if normal."""
        var = self.central_moment(2)
        return math.sqrt((self.central_moment(4) - var**2) / (4 * var * n))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(torch.tensor(self.weights), n, replacement=True, generator=generator)
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        means, stds = (torch.tensor(v, dtype=torch.float64) for v in (self.means, self.stds))
        return means[k] + stds[k] * z


GAUSSIAN = Mixture((1.0,), (0.3,), (0.5,))
BIMODAL = Mixture((0.3, 0.7), (-0.6, 0.6), (0.1, 0.1))


class ExactEps(nn.Module):
    """The optimal noise predictor E[eps | x_t] for scalar mixture data (x of shape [B, 1, 1, 1], t [B]),
    computed in float64 in log-space. A fractional t (Karras sigmas) gets the alpha-bar of the sigma whose log
    interpolates the table's linearly, the inverse of core.noise_levels.sigma_to_timestep; a whole t reads the
    table. `denoise` feeds the model x_t in the dtype of its first parameter (core.samplers.model_dtype; float32
    without one), so an unused parameter sets the dtype."""

    def __init__(self, schedule: NoiseSchedule, data: Mixture, dtype: torch.dtype = torch.float32):
        super().__init__()
        f64 = {"dtype": torch.float64}
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.clone())
        self.register_buffer("log_sigmas", torch.from_numpy(np.log(schedule_sigmas(schedule))))
        self.register_buffer("log_w", torch.tensor(data.weights, **f64).log())
        self.register_buffer("m", torch.tensor(data.means, **f64))
        self.register_buffer("s", torch.tensor(data.stds, **f64))
        self.dtype_anchor = nn.Parameter(torch.zeros((), dtype=dtype), requires_grad=False)

    def alpha_bar(self, t: Tensor) -> Tensor:
        if not torch.is_floating_point(t) or bool((t == t.round()).all()):
            return self.alphas_cumprod[t.long()]
        t = t.double()
        low = t.floor().long().clamp(max=len(self.log_sigmas) - 2)
        log_sigma = torch.lerp(self.log_sigmas[low], self.log_sigmas[low + 1], t - low)
        return 1.0 / (1.0 + torch.exp(2.0 * log_sigma))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        a = self.alpha_bar(t).reshape(-1, *([1] * x.dim()))  # [B, 1, 1, 1, 1]; the last axis is k
        xk = x.to(torch.float64).unsqueeze(-1)
        var = a * self.s**2 + 1 - a
        centred = xk - a.sqrt() * self.m
        log_r = self.log_w - 0.5 * centred**2 / var - 0.5 * var.log()
        r = torch.softmax(log_r, dim=-1)
        return ((1 - a).sqrt() * centred / var * r).sum(dim=-1).to(x.dtype)
