"""The samplers by name (`make_sampler`), the one sampling loop (`denoise`) and the sampling defaults.

`denoise()` is the only loop that calls the network: it builds the denoiser (the network's output at a noise level,
with classifier-free guidance, turned into pred_x0 and pred_eps) and hands it to the sampler's `run`, which yields a
`Step` per network call with its predicted x_0 and noise, so the explorer can show the whole trajectory.

Samplers (core.classic_samplers, core.sigma_samplers, core.dpm_solver):

| name | paper | network calls for n steps |
|---|---|---|
| ddpm | Ho et al. 2020, Algorithm 2 | n |
| ddim | Song et al. 2021, eq. 12 (eta: fresh noise, 0 deterministic) | n |
| euler | Karras et al. 2022, Algorithm 1 without the correction | n |
| euler_ancestral | k-diffusion; the ancestral step of Song et al. 2021's reverse SDE | n |
| heun | Karras et al. 2022, Algorithm 1 | 2n - 1 |
| dpmpp_2m | Lu et al. 2022 (DPM-Solver++), Algorithm 2 | n |
| dpmpp_2m_sde | its SDE variant (diffusers' "sde-dpmsolver++") | n |

Every sampler works with every objective (eps, x0, v), class labels and guidance, and with every spacing of
core.noise_levels ("linspace", "leading", "trailing", "karras").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import Tensor, nn

from core.classic_samplers import DDIMSampler, DDPMSampler
from core.diffusion import check_objective
from core.dpm_solver import DPMSolverPP2M, DPMSolverPP2MSDE
from core.noise_levels import SPACINGS
from core.sampler_base import Sampler, Step
from core.schedules import NoiseSchedule
from core.sdedit import levels_from
from core.sigma_samplers import EulerAncestralSampler, EulerSampler, HeunSampler

SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (
        DDPMSampler,
        DDIMSampler,
        EulerSampler,
        EulerAncestralSampler,
        HeunSampler,
        DPMSolverPP2M,
        DPMSolverPP2MSDE,
    )
}
SamplerName = Literal["ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde"]


def make_sampler(
    name: str,
    schedule: NoiseSchedule,
    *,
    eta: float = 0.0,
    objective: str = "eps",
    clip_x0: bool = False,
    spacing: str = "leading",
) -> Sampler:
    """A sampler by name (a key of SAMPLERS); eta applies to DDIM only."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if name == "ddim":
        return DDIMSampler(schedule, eta, objective=objective, clip_x0=clip_x0, spacing=spacing)
    return SAMPLERS[name](schedule, objective=objective, clip_x0=clip_x0, spacing=spacing)


# The defaults, measured on the shipped digit models (benchmarks/RESULTS.md "Sampler quality: mnist_uncond"): at
# 10 network calls DPM-Solver++(2M) SDE on trailing timesteps has the lowest FD of every sampler and spacing (tune
# split), on par with DDPM over all 1000 timesteps. Karras sigmas span sigma(0) .. sigma(T-1), ~1e4 on the cosine
# schedule, and spend most of 10 steps at noise levels where nothing is decided yet. "trailing" also starts at
# t = T-1 under zero terminal SNR, where DPM-Solver++'s first step is DDIM's from pure noise (Lin et al. 2023).
DEFAULT_SAMPLER = "dpmpp_2m_sde"
DEFAULT_STEPS = 10
DEFAULT_SPACING = "trailing"
LEGACY_SPACING = "leading"  # what records written before the spacing field sampled with
DDIM_STEPS = 50  # DDIM's usual number of network calls (FD near DDPM-1000's at 1/20 of the calls, RESULTS.md)
# A class-conditional model is sampled, unless asked otherwise, for each class in turn (`each_class`) with this
# classifier-free guidance scale: the Sample tab's, the CLI's and the benchmarks' default.
DEFAULT_GUIDANCE = 2.0


def each_class(num_classes: int | None, count: int, device: torch.device | str | None = None) -> Tensor | None:
    """Labels 0, 1, 2, ... in turn for `count` samples of a class-conditional model (num_classes set), so every
    class is drawn equally often; None for an unconditional model."""
    if not num_classes:
        return None
    return torch.arange(count, device=device) % num_classes


def default_steps(sampler: str, num_timesteps: int) -> int:
    """A sampler's usual number of steps: every timestep (T) for DDPM, 50 for DDIM, DEFAULT_STEPS for the others
    (at most T)."""
    if sampler == "ddpm":
        return num_timesteps
    return min(DDIM_STEPS if sampler == "ddim" else DEFAULT_STEPS, num_timesteps)


@dataclass(frozen=True)
class SamplingDefaults:
    """The sampler settings a checkpoint samples best with: its config.json records them as "sampling_defaults"
    (core/checkpoint.py), and the CLI and the Sample tab start from them. Sampler names are SAMPLERS' keys;
    an invalid value raises ValueError saying which field and what is allowed."""

    sampler: SamplerName = DEFAULT_SAMPLER  # a name in SAMPLERS
    steps: int = DEFAULT_STEPS  # sampler steps, 1..T (network calls: the same, but 2 steps - 1 for Heun)
    eta: float = 0.0  # DDIM's fresh noise per step, 0..1: 0 deterministic, 1 DDPM-like (the others ignore it)
    spacing: str = DEFAULT_SPACING  # the noise levels (core.noise_levels.SPACINGS)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        eta = self.eta
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta!r}")
        object.__setattr__(self, "eta", float(eta))
        if self.spacing not in SPACINGS:
            raise ValueError(f"unknown timestep spacing {self.spacing!r}; choose one of {', '.join(SPACINGS)}")

    @classmethod
    def for_objective(cls, objective: str) -> SamplingDefaults:
        """What a model trained for `objective` samples with unless its checkpoint records otherwise: the defaults
        (DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_SPACING), measured best on the x0 digit models; for eps and v
        models DPM-Solver++ is Lu et al. 2022's own recommendation at 10-20 network calls."""
        check_objective(objective)
        return cls()

    @property
    def network_calls(self) -> int:
        """How many times these settings call the network per sample (Heun: 2 steps - 1)."""
        return SAMPLERS[self.sampler].network_calls(self.steps)

    def sampler_for(self, schedule: NoiseSchedule, objective: str, *, clip_x0: bool = True) -> Sampler:
        """The sampler these settings name, for a model with this schedule and objective (make_sampler)."""
        return make_sampler(
            self.sampler, schedule, eta=self.eta, objective=objective, clip_x0=clip_x0, spacing=self.spacing
        )

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
        spacing: str | None = None,
        num_timesteps: int,
    ) -> SamplingDefaults:
        """These settings with the ones given replaced (None keeps the recorded one), checked against T. Another
        sampler than the recorded one, given without steps, takes its own usual count (`default_steps`)."""
        chosen = sampler or self.sampler
        if steps is None:
            steps = self.steps if chosen == self.sampler else default_steps(chosen, num_timesteps)
        chosen_eta = self.eta if eta is None else eta
        return SamplingDefaults(chosen, steps, chosen_eta, spacing or self.spacing).check_steps(num_timesteps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: object, num_timesteps: int | None = None) -> SamplingDefaults:
        """Read a record written by `to_dict` (a JSON object with exactly sampler, steps, eta and spacing; records
        older than the spacing field lack it and get "leading", what they were sampled with); ValueError says what
        is wrong. With `num_timesteps`, steps must also fit the schedule."""
        names = [f.name for f in fields(cls)]
        if not isinstance(record, dict):
            raise ValueError(f"must be an object with {', '.join(names)}, got {record!r:.100}")
        required = [n for n in names if n != "spacing"]
        missing, unknown = [n for n in required if n not in record], sorted(set(map(str, record)) - set(names))
        if missing or unknown:
            raise ValueError(f"must have exactly {', '.join(names)}; missing {missing}, unknown {unknown}")
        defaults = cls(**{"spacing": LEGACY_SPACING, **record})
        return defaults if num_timesteps is None else defaults.check_steps(num_timesteps)


def model_dtype(model: nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None else torch.float32


def guided_output(
    model: nn.Module,
    x_t: Tensor,
    t: int | float,
    y: Tensor | None = None,
    guidance_scale: float = 1.0,
    *,
    record: Callable[[Tensor], object] | None = None,
) -> Tensor:
    """The network's output at t; with labels and guidance_scale != 1, classifier-free guidance
    (Ho & Salimans 2022): out = out_uncond + s (out_cond - out_uncond), both in one batched call (which a merged
    call, explorer.merged_calls, hands back whole). record: called with out_cond - out_uncond when both are made."""
    batch = x_t.shape[0]
    whole = float(t).is_integer()  # Karras sigmas put the network at fractional timesteps
    t_batch = torch.full((batch,), t, dtype=torch.long if whole else torch.float32, device=x_t.device)
    x_in = x_t.to(model_dtype(model))
    if y is None:
        return model(x_in, t_batch).to(x_t.dtype)
    if guidance_scale == 1.0:
        return model(x_in, t_batch, y).to(x_t.dtype)
    null = torch.full_like(y, model.num_classes)
    out = model(torch.cat([x_in, x_in]), torch.cat([t_batch, t_batch]), torch.cat([y, null])).to(x_t.dtype)
    cond, uncond = out.chunk(2)
    difference = cond - uncond  # what the class adds to the output
    if record is not None:
        record(difference)
    return uncond + guidance_scale * difference


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
    start_t: int | None = None,
) -> Iterator[Step]:
    """Run the reverse process from x_T with num_steps sampler steps, yielding a `Step` per network call
    (`sampler.network_calls(num_steps)` of them); a guided call's Step carries the class's push on pred_x0
    (Step.guidance_x0: pred_x0 with the class minus without it).

    y: class labels [B] for a class-conditional model (None: unconditional); guidance_scale: classifier-free
    guidance strength (1 = plain conditional). All randomness comes from `generator`. start_t: x_T is x_t at this
    timestep, a picture noised part-way (SDEdit): the run starts there and visits only the levels below it
    (core.sdedit.levels_from), so it makes fewer network calls.
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
    levels = sampler.levels(num_steps) if start_t is None else levels_from(sampler, num_steps, start_t)

    differences: list[Tensor] = []  # out_cond - out_uncond of the network call being made
    directions: dict[int, Tensor] = {}  # network call -> its guidance direction in x_0 terms, until yielded

    def network(x_t: Tensor, t: int | float) -> Tensor:
        return guided_output(model, x_t, t, y, guidance_scale, record=differences.append)

    predict, calls = sampler.denoiser(network, levels), itertools.count()

    def denoiser(x_t: Tensor, level: int) -> tuple[Tensor, Tensor]:
        prediction, call = predict(x_t, level), next(calls)
        if differences:  # a guided call: its direction goes with the Step of this call (Step.index counts calls)
            directions[call] = sampler.x0_change(levels.alpha_bars[level], differences.pop())
        return prediction

    for step in sampler.run(denoiser, x_T, levels, generator):
        yield step._replace(guidance_x0=directions.pop(step.index, None))


def sample(model: nn.Module, sampler: Sampler, x_T: Tensor, num_steps: int, **kwargs) -> Tensor:
    """Run `denoise` to the end and return the final sample."""
    x = x_T
    for step in denoise(model, sampler, x_T, num_steps, **kwargs):
        x = step.x_t
    return x


def sample_as_default(
    model: nn.Module,
    sampler: Sampler,
    x_T: Tensor,
    num_steps: int,
    *,
    generator: torch.Generator | None = None,
    guidance: float = DEFAULT_GUIDANCE,
) -> Tensor:
    """`sample` as a model is sampled unless asked otherwise (the CLI, the Sample tab, the benchmarks): a
    class-conditional model for each class in turn with `guidance` (DEFAULT_GUIDANCE), an unconditional one
    plainly."""
    labels = each_class(getattr(model, "num_classes", None), x_T.shape[0], x_T.device)
    scale = guidance if labels is not None else 1.0
    return sample(model, sampler, x_T, num_steps, y=labels, guidance_scale=scale, generator=generator)
