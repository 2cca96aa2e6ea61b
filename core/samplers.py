"""Reverse-process samplers (DDPM, DDIM) behind one small interface, and `denoise()`, the one sampling loop.

A sampler knows the schedule and how to take one step; it never calls the network (diffusers' PHILOSOPHY.md).
`denoise()` is the loop that calls the network, written once, as a generator yielding every step with its
predicted x_0 and predicted noise, so the explorer can show the whole trajectory.

Notation (code -> paper): a_t = alpha-bar_t, a_prev = alpha-bar_{t_prev} (1 when t_prev = -1, i.e. the clean
image), beta_t' = 1 - a_t / a_prev (the effective beta of a jump from t_prev to t), sigma_t, eta (Song et al. 2021).

Timesteps are descending; the final step goes to t_prev = -1, the clean sample. With "linspace" and "leading"
spacing the last model call is at t = 0; with "trailing" it is at t = T/n - 1 (Lin et al. 2023, Table 2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from core.diffusion import check_objective, predict_eps, predict_x0
from core.schedules import NoiseSchedule

SPACINGS: tuple[str, ...] = ("linspace", "leading", "trailing")


def draw_noise(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype,
) -> Tensor:
    """Standard normal noise drawn on the generator's device (so a seed means the same noise everywhere), then
    moved to `device`."""
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


def timestep_sequence(num_train_timesteps: int, num_steps: int, spacing: str = "leading") -> list[int]:
    """The descending timesteps a sampler visits, as diffusers' `timestep_spacing` defines them
    ("linspace", "leading", "trailing"; see Lin et al. 2023, Table 2)."""
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps must be an integer in 1..{num_train_timesteps}, got {num_steps!r}")
    T, n = num_train_timesteps, num_steps
    if spacing == "linspace":
        steps = np.linspace(0, T - 1, n).round().astype(np.int64)[::-1]
    elif spacing == "leading":
        steps = (np.arange(n) * (T // n))[::-1]
    else:
        steps = np.array([round(T - i * T / n) - 1 for i in range(n)])
    return [int(s) for s in steps]


class Sampler:
    """Shared part of every sampler: timesteps, and turning a network output into (pred_x0, pred_eps)."""

    name = "base"

    def __init__(
        self, schedule: NoiseSchedule, *, objective: str = "eps", clip_x0: bool = False, spacing: str = "leading"
    ):
        check_objective(objective)
        if spacing not in SPACINGS:
            raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
        self.schedule = schedule
        self.objective = objective
        self.clip_x0 = clip_x0
        self.spacing = spacing

    def timesteps(self, num_steps: int) -> list[int]:
        """Descending timesteps for num_steps model calls."""
        return timestep_sequence(self.schedule.num_timesteps, num_steps, self.spacing)

    def predict(self, x_t: Tensor, t: int, model_output: Tensor) -> tuple[Tensor, Tensor]:
        """(pred_x0, pred_eps) from the network's output at timestep t; with clip_x0, x_0 is clamped to [-1, 1]
        and eps recomputed from the clamped x_0 so the two stay consistent."""
        if self.objective == "eps" and self.schedule.alpha_bar(t) == 0:
            raise ValueError(
                "an eps-prediction model cannot denoise pure noise (alpha-bar = 0 at this t: zero terminal SNR); "
                "use a v- or x0-prediction model, or a spacing that skips the last step (Lin et al. 2023)"
            )
        pred_x0 = predict_x0(self.schedule, x_t, t, model_output, self.objective)
        if self.clip_x0:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
            pred_eps = predict_eps(self.schedule, x_t, t, pred_x0, "x0")
        else:
            pred_eps = predict_eps(self.schedule, x_t, t, model_output, self.objective)
        return pred_x0, pred_eps

    def step_from_predictions(
        self,
        x_t: Tensor,
        t: int,
        t_prev: int,
        pred_x0: Tensor,
        pred_eps: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        raise NotImplementedError

    def step(
        self,
        x_t: Tensor,
        t: int,
        t_prev: int,
        model_output: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One reverse step from x_t at t to x_{t_prev} (t_prev = -1: the clean sample). Returns (x_prev, pred_x0).
        Fresh noise comes from `generator`, or pass `noise` to inject it."""
        if not -1 <= t_prev < t < self.schedule.num_timesteps:
            raise ValueError(f"need -1 <= t_prev < t < {self.schedule.num_timesteps}, got t={t}, t_prev={t_prev}")
        pred_x0, pred_eps = self.predict(x_t, t, model_output)
        x_prev = self.step_from_predictions(x_t, t, t_prev, pred_x0, pred_eps, generator, noise)
        return x_prev, pred_x0

    def _noise(self, x_t: Tensor, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        return noise if noise is not None else draw_noise(x_t.shape, generator, x_t.device, x_t.dtype)


class DDPMSampler(Sampler):
    """Ancestral sampling from the posterior q(x_{t_prev} | x_t, x_0 = pred_x0) with variance beta-tilde
    (Ho et al. 2020, Algorithm 2; fewer steps than T use the effective beta of each jump, as diffusers does)."""

    name = "ddpm"

    def step_from_predictions(
        self,
        x_t: Tensor,
        t: int,
        t_prev: int,
        pred_x0: Tensor,
        pred_eps: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        a_t, a_prev = self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_prev)
        beta_t = 1.0 - a_t / a_prev  # 1. effective beta of the jump t_prev -> t
        # 2. posterior mean coefficients, Ho et al. eq. 7
        coef_x0 = math.sqrt(a_prev) * beta_t / (1.0 - a_t)
        coef_xt = math.sqrt(1.0 - beta_t) * (1.0 - a_prev) / (1.0 - a_t)
        mean = coef_x0 * pred_x0 + coef_xt * x_t
        if t_prev < 0:
            return mean  # 3. the last step returns the posterior mean, no noise
        # 4. posterior variance beta-tilde, eq. 7, clamped like diffusers' "fixed_small"
        variance = max((1.0 - a_prev) / (1.0 - a_t) * beta_t, 1e-20)
        return mean + math.sqrt(variance) * self._noise(x_t, generator, noise)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, eq. 12): x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z, with
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev) (eq. 16). eta = 0 is deterministic;
    eta = 1 has DDPM's variance."""

    name = "ddim"

    def __init__(
        self,
        schedule: NoiseSchedule,
        eta: float = 0.0,
        *,
        objective: str = "eps",
        clip_x0: bool = False,
        spacing: str = "leading",
    ):
        super().__init__(schedule, objective=objective, clip_x0=clip_x0, spacing=spacing)
        if not (0.0 <= eta <= 1.0):
            raise ValueError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
        self.eta = float(eta)

    def step_from_predictions(
        self,
        x_t: Tensor,
        t: int,
        t_prev: int,
        pred_x0: Tensor,
        pred_eps: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        a_t, a_prev = self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_prev)
        # 1. sigma_t, eq. 16
        sigma = self.eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        # 2. "direction pointing to x_t", eq. 12
        direction = math.sqrt(max(1.0 - a_prev - sigma**2, 0.0)) * pred_eps
        # 3. x_{t_prev} without the random part, eq. 12
        x_prev = math.sqrt(a_prev) * pred_x0 + direction
        if sigma > 0:
            x_prev = x_prev + sigma * self._noise(x_t, generator, noise)
        return x_prev


SAMPLERS: dict[str, type[Sampler]] = {"ddpm": DDPMSampler, "ddim": DDIMSampler}


def make_sampler(
    name: str,
    schedule: NoiseSchedule,
    *,
    eta: float = 0.0,
    objective: str = "eps",
    clip_x0: bool = False,
    spacing: str = "leading",
) -> Sampler:
    """A sampler by name ("ddpm" or "ddim"); eta applies to DDIM only."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if name == "ddim":
        return DDIMSampler(schedule, eta, objective=objective, clip_x0=clip_x0, spacing=spacing)
    return DDPMSampler(schedule, objective=objective, clip_x0=clip_x0, spacing=spacing)


DDIM_STEPS = 50  # DDIM's usual number of network calls (FD near DDPM-1000's at 1/20 of the calls, RESULTS.md)


def default_steps(sampler: str, num_timesteps: int) -> int:
    """A sampler's usual number of network calls: 50 for DDIM, every timestep (T) for DDPM."""
    return DDIM_STEPS if sampler == "ddim" else num_timesteps


@dataclass(frozen=True)
class SamplingDefaults:
    """The sampler settings a checkpoint samples best with: its config.json records them as "sampling_defaults"
    (core/checkpoint.py), and the CLI and the Sample tab start from them. Sampler names are core's ("ddpm", "ddim");
    an invalid value raises ValueError saying which field and what is allowed."""

    sampler: Literal["ddpm", "ddim"] = "ddim"  # a name in SAMPLERS
    steps: int = DDIM_STEPS  # network calls, 1..T
    eta: float = 0.0  # DDIM's fresh noise per step, 0..1: 0 deterministic, 1 DDPM-like (DDPM ignores it)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        eta = self.eta
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta!r}")
        object.__setattr__(self, "eta", float(eta))

    @classmethod
    def for_objective(cls, objective: str) -> SamplingDefaults:
        """What a model trained for `objective` samples best with. x0: DDIM-50 with eta 1 (measured on the shipped
        x0 digit models, benchmarks/RESULTS.md "Sampler quality": lower FD than eta 0 at every step count, FD 21.0
        against 36.7 at 50 steps unconditional). eps and v: DDIM-50 with eta 0 (Song et al. 2021, Table 1: eta 0
        beats eta 1 at 10-100 steps on eps models)."""
        check_objective(objective)
        return cls(eta=1.0 if objective == "x0" else 0.0)

    def check_steps(self, num_timesteps: int) -> SamplingDefaults:
        """Itself, after checking that its steps fit a schedule of `num_timesteps` (ValueError if not)."""
        if self.steps > num_timesteps:
            raise ValueError(f"steps must be at most {num_timesteps} (the model's T), got {self.steps}")
        return self

    def override(
        self,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        num_timesteps: int,
    ) -> SamplingDefaults:
        """These settings with the ones given replaced (None keeps the recorded one), checked against T. Another
        sampler than the recorded one, given without steps, takes its own usual count (`default_steps`)."""
        chosen = sampler or self.sampler
        if steps is None:
            steps = self.steps if chosen == self.sampler else default_steps(chosen, num_timesteps)
        return SamplingDefaults(chosen, steps, self.eta if eta is None else eta).check_steps(num_timesteps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: object, num_timesteps: int | None = None) -> SamplingDefaults:
        """Read a record written by `to_dict` (a JSON object with exactly sampler, steps and eta); ValueError says
        what is wrong. With `num_timesteps`, steps must also fit the schedule."""
        names = [f.name for f in fields(cls)]
        if not isinstance(record, dict):
            raise ValueError(f"must be an object with {', '.join(names)}, got {record!r:.100}")
        missing, unknown = [n for n in names if n not in record], sorted(set(map(str, record)) - set(names))
        if missing or unknown:
            raise ValueError(f"must have exactly {', '.join(names)}; missing {missing}, unknown {unknown}")
        defaults = cls(**record)
        return defaults if num_timesteps is None else defaults.check_steps(num_timesteps)


class Step(NamedTuple):
    """One reverse step: x_t is the new state (at noise level t_prev; the last one is the sample)."""

    index: int  # 0 .. num_steps - 1
    t: int  # the timestep the network was evaluated at
    x_t: Tensor  # the state after this step, (B, C, H, W)
    pred_x0: Tensor  # the network's guess of the clean image at t
    pred_eps: Tensor  # the network's guess of the noise at t
    t_prev: int  # the noise level of x_t (-1 = clean)


def model_dtype(model: nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None else torch.float32


def guided_output(
    model: nn.Module, x_t: Tensor, t: int, y: Tensor | None = None, guidance_scale: float = 1.0
) -> Tensor:
    """The network's output at t; with labels and guidance_scale != 1, classifier-free guidance
    (Ho & Salimans 2022): out = out_uncond + s (out_cond - out_uncond), both in one batched call."""
    batch = x_t.shape[0]
    t_batch = torch.full((batch,), t, dtype=torch.long, device=x_t.device)
    x_in = x_t.to(model_dtype(model))
    if y is None:
        return model(x_in, t_batch).to(x_t.dtype)
    if guidance_scale == 1.0:
        return model(x_in, t_batch, y).to(x_t.dtype)
    null = torch.full_like(y, model.num_classes)
    out = model(torch.cat([x_in, x_in]), torch.cat([t_batch, t_batch]), torch.cat([y, null])).to(x_t.dtype)
    cond, uncond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


@torch.no_grad()
def denoise(
    model: nn.Module,
    sampler: Sampler,
    x_T: Tensor,
    num_steps: int,
    *,
    y: Tensor | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Iterator[Step]:
    """Run the reverse process from x_T for num_steps network calls, yielding every `Step`.

    y: class labels [B] for a class-conditional model (None: unconditional); guidance_scale: classifier-free
    guidance strength (1 = plain conditional). All randomness comes from `generator`.
    """
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")
    if y is not None:
        num_classes = getattr(model, "num_classes", None)
        if not num_classes:
            raise ValueError("labels were given but this model is not class-conditional")
        y = torch.as_tensor(y, device=x_T.device).long().expand(x_T.shape[0]).contiguous()
        if bool(((y < 0) | (y >= num_classes)).any()):
            raise ValueError(f"labels must be in 0..{num_classes - 1}")
    timesteps = sampler.timesteps(num_steps)
    x = x_T
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        output = guided_output(model, x, t, y, guidance_scale)
        pred_x0, pred_eps = sampler.predict(x, t, output)
        x = sampler.step_from_predictions(x, t, t_prev, pred_x0, pred_eps, generator)
        yield Step(i, t, x, pred_x0, pred_eps, t_prev)


def sample(model: nn.Module, sampler: Sampler, x_T: Tensor, num_steps: int, **kwargs) -> Tensor:
    """Run `denoise` to the end and return the final sample."""
    x = x_T
    for step in denoise(model, sampler, x_T, num_steps, **kwargs):
        x = step.x_t
    return x
