"""Starting the reverse process part-way: SDEdit (Meng et al. 2021, "SDEdit: Guided Image Synthesis and Editing
with Stochastic Differential Equations").

SDEdit noises a picture x_0 to a timestep t_0 with the forward process, x_t0 = sqrt(a_t0) x_0 + sqrt(1 - a_t0) eps
(core.diffusion.q_sample), and runs the reverse process from there instead of from pure noise (Meng et al.,
Algorithm 1; diffusers' img2img pipelines do the same with `strength` = t_0 / T). A small t_0 keeps the picture, a
large one keeps only its rough layout, and the model fills in the rest in its own style.

`levels_from` gives the noise levels of such a run: the first is t_0 itself, and the rest are the levels the
sampler would visit in an ordinary run of `num_steps` steps that lie below t_0 (diffusers keeps the tail of its
timesteps the same way), less the highest of them when it is closer to t_0 than half a stride (t_0 stands in for
it, rather than a step of a few timesteps). So a run makes about num_steps * t_0 / T steps; from t_0 = T-1 it visits
the very levels of an ordinary run whenever that one starts at T-1 ("linspace", "trailing" and "karras" spacings),
and from t_0 = 0 it makes one network call, straight to the clean sample. core.samplers.denoise(..., start_t=t_0)
runs any sampler on them.
"""

from __future__ import annotations

from core.noise_levels import NoiseLevels, noise_levels
from core.sampler_base import Sampler

SAME_LEVEL = 1e-6  # a level this close to t_0 is t_0 itself (Karras timesteps are fractional, up to rounding)


def levels_from(sampler: Sampler, num_steps: int, start_t: int) -> NoiseLevels:
    """The levels of a run of `sampler` that starts at x_t at timestep `start_t` (a whole timestep in 0..T-1):
    start_t, then the levels of an ordinary num_steps-step run below it, then the clean sample. ValueError for a
    start_t outside 0..T-1, or where the sampler cannot start (a sigma sampler at alpha-bar = 0)."""
    schedule = sampler.schedule
    T = schedule.num_timesteps
    if isinstance(start_t, bool) or not isinstance(start_t, int) or not 0 <= start_t < T:
        raise ValueError(f"start_t must be a whole timestep from 0 to {T - 1}, got {start_t!r}")
    start_alpha_bar = schedule.alpha_bar(start_t)
    if sampler.needs_finite_sigma and start_alpha_bar == 0.0:
        raise ValueError(
            f"{sampler.name} integrates x / sqrt(alpha-bar), which is infinite at t = {start_t} under zero terminal "
            "SNR; start one step lower, or use DDIM, DDPM or DPM-Solver++"
        )
    full = noise_levels(schedule, num_steps, sampler.spacing, whole_timesteps=sampler.whole_timesteps)
    below = [i for i, t in enumerate(full.timesteps) if t < start_t - SAME_LEVEL]
    if below and len(full) > 1:  # the highest one is dropped when t_0 stands in for it (closer than half a stride)
        j = below[0]
        stride = abs(full.timesteps[j - 1 if j > 0 else j + 1] - full.timesteps[j])
        if start_t - full.timesteps[j] < stride / 2:
            below = below[1:]
    return NoiseLevels(
        (start_t, *(full.timesteps[i] for i in below)),
        (start_alpha_bar, *(full.alpha_bars[i] for i in below), 1.0),
    )
