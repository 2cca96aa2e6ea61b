"""Noise schedules: beta-schedule functions and the frozen `NoiseSchedule` of derived coefficients.

Every beta-schedule is a pure function ``(T, **params) -> float64 tensor [T]``. `make_schedule` picks one by name,
optionally rescales it to zero terminal SNR, and derives every coefficient the forward process, the training loss
and the samplers need, once, in float64.

Notation (code name -> paper symbol, Ho et al. 2020):
    betas                -> beta_t
    alphas               -> alpha_t = 1 - beta_t
    alphas_cumprod       -> alpha-bar_t = prod_{s<=t} alpha_s
    alphas_cumprod_prev  -> alpha-bar_{t-1} (alpha-bar_{-1} = 1)
    posterior_variance   -> beta-tilde_t = beta_t (1 - alpha-bar_{t-1}) / (1 - alpha-bar_t)   (eq. 7)
    posterior_mean_coef1 -> coefficient of x_0 in mu-tilde_t (eq. 7)
    posterior_mean_coef2 -> coefficient of x_t in mu-tilde_t (eq. 7)
    snr                  -> alpha-bar_t / (1 - alpha-bar_t);  log_snr = log(snr)

Timesteps are 0-based: t = 0 is the first noising step, t = T - 1 the last, as in diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

SCHEDULE_NAMES = ("linear", "cosine", "sigmoid", "scaled_linear")
MIN_TIMESTEPS = 2
MAX_BETA = 0.999  # Nichol & Dhariwal 2021 cap betas so the last steps stay invertible


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Linear betas from beta_start to beta_end (Ho et al. 2020, "Denoising Diffusion Probabilistic Models")."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def scaled_linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Betas linear in sqrt(beta), as diffusers' "scaled_linear" (the latent-diffusion / Stable Diffusion schedule)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def sigmoid_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Betas following a sigmoid over [-6, 6] between beta_start and beta_end, as diffusers' "sigmoid" (GeoDiff)."""
    x = torch.linspace(-6.0, 6.0, num_timesteps, dtype=torch.float64)
    return torch.sigmoid(x) * (beta_end - beta_start) + beta_start


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = MAX_BETA) -> Tensor:
    """Cosine alpha-bar, betas capped at 0.999 (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17; diffusers'
    "squaredcos_cap_v2")."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Shift and scale sqrt(alpha-bar) so the last step is pure noise (Lin et al. 2023, "Common Diffusion Noise
    Schedules and Sample Steps are Flawed", Algorithm 1). The first alpha-bar is kept; the last becomes 0."""
    alphas_bar_sqrt = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


@dataclass(frozen=True)
class NoiseSchedule:
    """Every per-timestep coefficient of a discrete diffusion process, as float64 tensors of shape [T].

    Build it with `make_schedule`; `params` records the arguments that rebuild it (and export it to diffusers).
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor
    posterior_variance: Tensor
    posterior_mean_coef1: Tensor
    posterior_mean_coef2: Tensor
    snr: Tensor
    log_snr: Tensor
    params: dict = field(default_factory=dict)

    @classmethod
    def from_betas(cls, betas: Tensor, params: dict | None = None) -> NoiseSchedule:
        """Derive every coefficient from betas (float64, shape [T], each in (0, 1])."""
        betas = betas.to(torch.float64)
        alphas = 1 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        one_minus = 1 - alphas_cumprod
        # eq. 7 of Ho et al.: beta-tilde_t and the two coefficients of mu-tilde_t
        posterior_variance = betas * (1 - alphas_cumprod_prev) / one_minus
        posterior_mean_coef1 = betas * alphas_cumprod_prev.sqrt() / one_minus
        posterior_mean_coef2 = (1 - alphas_cumprod_prev) * alphas.sqrt() / one_minus
        snr = alphas_cumprod / one_minus
        return cls(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=one_minus.sqrt(),
            posterior_variance=posterior_variance,
            posterior_mean_coef1=posterior_mean_coef1,
            posterior_mean_coef2=posterior_mean_coef2,
            snr=snr,
            log_snr=torch.log(snr),
            params=dict(params or {}),
        )

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    @property
    def name(self) -> str:
        return str(self.params.get("name", "custom"))

    @property
    def has_zero_terminal_snr(self) -> bool:
        return bool(self.alphas_cumprod[-1] == 0)

    def alpha_bar(self, t: int) -> float:
        """alpha-bar_t as a Python float; t = -1 means "before any noise" (alpha-bar = 1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def at(
        self,
        coef: Tensor,
        t: Tensor | int,
        x_shape: torch.Size | tuple[int, ...],
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Take coef[t] for each batch element and shape it [B, 1, 1, ...] to broadcast over x of x_shape.

        The one broadcast helper (lucidrains' `extract`): t is an int (same t for the batch) or a LongTensor [B].
        The result is cast to `dtype` (default float64) on `device` (default t's device).
        """
        if isinstance(t, int):
            t = torch.tensor([t])
        if device is None:
            device = t.device
        values = coef.to(dtype=dtype or coef.dtype).to(device)[t.to(device).long()]  # (B,)
        return values.reshape(-1, *([1] * (len(x_shape) - 1)))

    def to_diffusers_config(self) -> dict:
        """A diffusers `scheduler_config.json` dict that reproduces these betas in DDPMScheduler / DDIMScheduler."""
        p = self.params
        name = p.get("name")
        beta_schedule = {"cosine": "squaredcos_cap_v2"}.get(name, name)
        if beta_schedule not in ("linear", "scaled_linear", "sigmoid", "squaredcos_cap_v2"):
            raise ValueError(f"schedule {name!r} has no diffusers equivalent")
        if name == "cosine" and p.get("cosine_s", 0.008) != 0.008:
            raise ValueError("diffusers' squaredcos_cap_v2 fixes s = 0.008; this schedule uses another s")
        return {
            "_class_name": "DDPMScheduler",
            "num_train_timesteps": self.num_timesteps,
            "beta_start": p.get("beta_start", 1e-4),
            "beta_end": p.get("beta_end", 0.02),
            "beta_schedule": beta_schedule,
            "rescale_betas_zero_snr": bool(p.get("zero_terminal_snr", False)),
            "clip_sample": False,
            "prediction_type": "epsilon",
        }


_BETA_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "sigmoid": sigmoid_betas,
}


def make_schedule(
    name: str = "linear",
    num_timesteps: int = 1000,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    cosine_s: float = 0.008,
    zero_terminal_snr: bool = False,
) -> NoiseSchedule:
    """Build a `NoiseSchedule` by name: "linear", "cosine", "sigmoid" or "scaled_linear".

    beta_start / beta_end apply to linear, sigmoid and scaled_linear; cosine_s to cosine. zero_terminal_snr rescales
    any of them so alpha-bar at the last step is exactly 0 (Lin et al. 2023). Bad arguments raise ValueError.
    """
    if name not in SCHEDULE_NAMES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < MIN_TIMESTEPS:
        raise ValueError(f"num_timesteps must be an integer >= {MIN_TIMESTEPS}, got {num_timesteps!r}")
    if name == "cosine":
        if not (0 < cosine_s < 1):
            raise ValueError(f"cosine_s must be in (0, 1) (Nichol & Dhariwal use 0.008), got {cosine_s!r}")
        betas = cosine_betas(num_timesteps, s=cosine_s)
    else:
        for label, value in (("beta_start", beta_start), ("beta_end", beta_end)):
            if not (0 < value < 1) or not math.isfinite(value):
                raise ValueError(f"{label} must be in (0, 1), got {value!r}")
        if beta_start >= beta_end:
            raise ValueError(f"beta_start ({beta_start}) must be smaller than beta_end ({beta_end})")
        betas = _BETA_FUNCTIONS[name](num_timesteps, beta_start, beta_end)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    params = {
        "name": name,
        "num_timesteps": num_timesteps,
        "beta_start": beta_start,
        "beta_end": beta_end,
        "cosine_s": cosine_s,
        "zero_terminal_snr": zero_terminal_snr,
    }
    return NoiseSchedule.from_betas(betas, params)


DIFFUSERS_BETA_SCHEDULES = {  # diffusers' beta_schedule -> ours
    "linear": "linear",
    "scaled_linear": "scaled_linear",
    "sigmoid": "sigmoid",
    "squaredcos_cap_v2": "cosine",
}


def schedule_from_diffusers_config(config: dict) -> NoiseSchedule:
    """The schedule a diffusers scheduler config (scheduler_config.json of DDPMScheduler, DDIMScheduler, ...)
    describes: the inverse of `NoiseSchedule.to_diffusers_config`. Reads num_train_timesteps, beta_schedule
    (DIFFUSERS_BETA_SCHEDULES), beta_start, beta_end, trained_betas and rescale_betas_zero_snr, with diffusers'
    defaults; ValueError for what it cannot reproduce."""
    zero_terminal_snr = bool(config.get("rescale_betas_zero_snr", False))
    trained = config.get("trained_betas")
    if trained is not None:
        try:
            betas = torch.tensor(trained, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"trained_betas must be a list of numbers: {error}") from None
        if betas.ndim != 1 or len(betas) < MIN_TIMESTEPS or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError(f"trained_betas must be {MIN_TIMESTEPS} or more numbers in (0, 1]")
        if zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        params = {"name": "custom", "num_timesteps": len(betas), "zero_terminal_snr": zero_terminal_snr}
        return NoiseSchedule.from_betas(betas, params)
    beta_schedule = config.get("beta_schedule", "linear")
    if beta_schedule not in DIFFUSERS_BETA_SCHEDULES:
        known = ", ".join(DIFFUSERS_BETA_SCHEDULES)
        raise ValueError(f"beta_schedule {beta_schedule!r} is not one this app can reproduce; known: {known}")
    name = DIFFUSERS_BETA_SCHEDULES[beta_schedule]
    betas = {"beta_start": config.get("beta_start", 1e-4), "beta_end": config.get("beta_end", 0.02)}
    num_timesteps = config.get("num_train_timesteps", 1000)
    return make_schedule(name, num_timesteps, zero_terminal_snr=zero_terminal_snr, **betas)


def schedule_from_params(params: dict) -> NoiseSchedule:
    """Rebuild a schedule from `NoiseSchedule.params` (as stored in a checkpoint's config.json)."""
    allowed = {"name", "num_timesteps", "beta_start", "beta_end", "cosine_s", "zero_terminal_snr"}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown schedule parameters {sorted(unknown)}; allowed: {sorted(allowed)}")
    kwargs = {k: v for k, v in params.items() if k not in ("name", "num_timesteps")}
    return make_schedule(params.get("name", "linear"), params.get("num_timesteps", 1000), **kwargs)
