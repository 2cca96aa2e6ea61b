"""The noise levels a sampler visits: timestep spacings (Lin et al. 2023, Table 2) and Karras sigmas.

A sampler with n steps evaluates the network at n noise levels, highest first, and ends at the clean sample.
`NoiseLevels` holds them: the network's timestep at each level and alpha-bar at each level plus the final clean
one (alpha-bar = 1). Samplers written in sigma (Karras et al. 2022) read the same levels as
sigma = sqrt((1 - alpha-bar) / alpha-bar): x_sigma = x_0 + sigma eps is the scaled state x_t / sqrt(alpha-bar).

Spacings:
* "linspace", "leading", "trailing": whole timesteps, as diffusers' DDIMScheduler defines them (`timestep_sequence`;
  with "linspace" and "leading" the last network call is at t = 0, with "trailing" at t = T/n - 1).
* "karras": n sigmas from sigma_max = sigma(T - 1) down to sigma_min = sigma(0), evenly spaced in sigma^(1/rho)
  with rho = 7 (Karras et al. 2022, eq. 5), and each sigma's timestep read off the schedule by interpolating
  log sigma (diffusers' `_sigma_to_t`): fractional timesteps, unless the sampler asks for whole ones (diffusers'
  DPMSolverMultistepScheduler rounds them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.schedules import NoiseSchedule

SPACINGS: tuple[str, ...] = ("linspace", "leading", "trailing", "karras")
WHOLE_SPACINGS: tuple[str, ...] = ("linspace", "leading", "trailing")  # the ones that visit whole timesteps only
KARRAS_RHO = 7.0  # Karras et al. 2022, Table 1: rho = 7


def check_spacing(spacing: str) -> None:
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")


def check_num_steps(num_steps: int, num_timesteps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be an integer in 1..{num_timesteps}, got {num_steps!r}")


def timestep_sequence(num_train_timesteps: int, num_steps: int, spacing: str = "leading") -> list[int]:
    """The descending whole timesteps a sampler visits, as diffusers' `timestep_spacing` defines them
    ("linspace", "leading", "trailing"; see Lin et al. 2023, Table 2)."""
    if spacing not in WHOLE_SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(WHOLE_SPACINGS)}")
    check_num_steps(num_steps, num_train_timesteps)
    T, n = num_train_timesteps, num_steps
    if spacing == "linspace":
        steps = np.linspace(0, T - 1, n).round().astype(np.int64)[::-1]
    elif spacing == "leading":
        steps = (np.arange(n) * (T // n))[::-1]
    else:
        steps = np.array([round(T - i * T / n) - 1 for i in range(n)])
    return [int(s) for s in steps]


def sigma_of(alpha_bar: float) -> float:
    """sigma = sqrt((1 - alpha-bar) / alpha-bar): infinite at alpha-bar = 0 (zero terminal SNR), 0 when clean."""
    return math.inf if alpha_bar <= 0.0 else math.sqrt(max(1.0 - alpha_bar, 0.0) / alpha_bar)


def alpha_bar_of(sigma: float) -> float:
    """The inverse of `sigma_of`: alpha-bar = 1 / (1 + sigma^2)."""
    return 0.0 if math.isinf(sigma) else 1.0 / (1.0 + sigma * sigma)


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = KARRAS_RHO) -> np.ndarray:
    """Karras et al. 2022, eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho
    for i = 0 .. n-1, descending (float64)."""
    ramp = np.linspace(0.0, 1.0, n)
    max_inv, min_inv = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return (max_inv + ramp * (min_inv - max_inv)) ** rho


def schedule_sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """sigma(t) for t = 0 .. T-1 (float64; infinite where alpha-bar is 0)."""
    a = schedule.alphas_cumprod.numpy()
    with np.errstate(divide="ignore"):
        return np.sqrt((1.0 - a) / a)


def sigma_to_timestep(sigmas: np.ndarray, schedule: NoiseSchedule) -> np.ndarray:
    """The (fractional) timestep of each sigma: linear interpolation of log sigma between the two timesteps whose
    sigmas bracket it, clamped to 0 .. T-1 (diffusers' `_sigma_to_t`)."""
    log_table = np.log(schedule_sigmas(schedule))  # increasing in t
    log_sigma = np.log(np.maximum(np.asarray(sigmas, dtype=np.float64), 1e-10))
    low = np.clip(np.searchsorted(log_table, log_sigma, side="right") - 1, 0, len(log_table) - 2)
    weight = np.clip((log_table[low] - log_sigma) / (log_table[low] - log_table[low + 1]), 0.0, 1.0)
    return low + weight


@dataclass(frozen=True)
class NoiseLevels:
    """The n noise levels of a sampler's run, highest first, then the clean sample."""

    timesteps: tuple[float, ...]  # the network's timestep at each level (n)
    alpha_bars: tuple[float, ...]  # alpha-bar at each level and, last, 1.0 for the clean sample (n + 1)

    def __post_init__(self) -> None:
        if len(self.alpha_bars) != len(self.timesteps) + 1 or self.alpha_bars[-1] != 1.0:
            raise ValueError("alpha_bars must hold one value per timestep and a final 1.0 (the clean sample)")

    def __len__(self) -> int:
        return len(self.timesteps)

    def sigma(self, i: int) -> float:
        """sigma of level i (level n is the clean sample, sigma 0)."""
        return sigma_of(self.alpha_bars[i])

    def label(self, i: int) -> int | float:
        """What a step's t_prev says about level i: its timestep, or -1 for the clean sample."""
        return self.timesteps[i] if i < len(self.timesteps) else -1


def noise_levels(
    schedule: NoiseSchedule, num_steps: int, spacing: str = "leading", *, whole_timesteps: bool = False
) -> NoiseLevels:
    """The levels of `num_steps` steps with `spacing`. "karras" needs a finite sigma_max (ValueError under zero
    terminal SNR); `whole_timesteps` rounds Karras timesteps (the sigmas stay Karras')."""
    check_spacing(spacing)
    T = schedule.num_timesteps
    check_num_steps(num_steps, T)
    if spacing != "karras":
        steps = timestep_sequence(T, num_steps, spacing)
        return NoiseLevels(tuple(steps), (*tuple(schedule.alpha_bar(t) for t in steps), 1.0))
    table = schedule_sigmas(schedule)
    if not np.isfinite(table[-1]):
        raise ValueError(
            "Karras sigmas need a finite sigma_max, but this schedule has zero terminal SNR (sigma = infinity at "
            "t = T-1); choose the 'trailing', 'leading' or 'linspace' spacing"
        )
    sigmas = karras_sigmas(float(table[0]), float(table[-1]), num_steps)
    timesteps = sigma_to_timestep(sigmas, schedule)
    if whole_timesteps:
        timesteps = timesteps.round()
    return NoiseLevels(
        tuple(int(t) if whole_timesteps else float(t) for t in timesteps),
        (*tuple(alpha_bar_of(float(s)) for s in sigmas), 1.0),
    )
