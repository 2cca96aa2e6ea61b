"""The calibration ladder of the digit metrics: damaged real digits whose order of quality is known in advance.

`calibration_ladder(n, seed)` draws n of mnist5k's training digits (never in the metrics' reference splits) and
degrades them step by step: Gaussian blur of 1, 1.5 and 2 px, half contrast on grey with light noise, salt and
pepper on 5%-40% of the pixels; beside them pictures with no digit at all (Gaussian noise, blank). A metric that
can rank what a diffusion model draws in its first seconds and minutes of training must order these rungs;
`ladder_violations` lists the orders it breaks (tests/test_metric_calibration.py and
benchmarks/metric_calibration.py check them).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from core.data import load_dataset

BLURS = (1.0, 1.5, 2.0)  # Gaussian blur sigma, pixels
SALT_AND_PEPPER = (0.05, 0.10, 0.20, 0.40)  # share of pixels set to black or white
GREY_CONTRAST, GREY_NOISE = 0.5, 0.1  # "digits at half contrast on grey, light noise": 0.5 x + 0.1 N(0, 1)
MAX_GREY_TO_NOISE = 0.8  # grey digits score at most this times Gaussian noise's FD
MIN_APART = 0.05  # Gaussian noise, blank and grey digits: each pair's FDs differ by at least this share


def blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of images [N, 1, H, W] with the background (-1) beyond the border."""
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(images, (radius,) * 4, value=-1.0)
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(rows, kernel.view(1, 1, -1, 1))


def salt_and_pepper(images: Tensor, share: float, generator: torch.Generator) -> Tensor:
    """Set a random `share` of the pixels to white (+1) or black (-1), half each on average."""
    chosen = torch.rand(images.shape, generator=generator) < share
    values = torch.where(torch.rand(images.shape, generator=generator) < 0.5, -1.0, 1.0)
    return torch.where(chosen, values, images)


def rung_name(kind: str, value: float | None = None) -> str:
    if kind == "blur":
        return f"blurred {value:g} px"
    if kind == "salt":
        return f"salt and pepper {value:.0%}"
    return kind


def calibration_ladder(n: int = 256, seed: int = 0) -> dict[str, Tensor]:
    """The rungs, name -> images [n, 1, 32, 32] in [-1, 1], in order: "real digits" (n seeded training digits),
    "blurred 1 px" .. "blurred 2 px", "grey digits" (half contrast on grey, light noise), "Gaussian noise"
    (N(0, 1) clipped), "blank" (all background), "salt and pepper 5%" .. "40%"."""
    train = load_dataset("mnist5k", split="train", image_size=32).images
    generator = torch.Generator().manual_seed(seed)
    real = train[torch.randperm(len(train), generator=generator)[:n]]
    rungs = {"real digits": real}
    rungs.update({rung_name("blur", sigma): blur(real, sigma) for sigma in BLURS})
    grey = GREY_CONTRAST * real + GREY_NOISE * torch.randn(real.shape, generator=generator)
    rungs["grey digits"] = grey.clamp(-1, 1)
    rungs["Gaussian noise"] = torch.randn(real.shape, generator=generator).clamp(-1, 1)
    rungs["blank"] = torch.full_like(real, -1.0)
    rungs.update({rung_name("salt", share): salt_and_pepper(real, share, generator) for share in SALT_AND_PEPPER})
    return rungs


def ladder_violations(fd: dict[str, float]) -> list[str]:
    """The ladder's orders that `fd` (rung name -> score, lower is better) breaks; [] when calibrated."""
    broken = []
    chains = [
        ["real digits", *(rung_name("blur", s) for s in BLURS)],
        [rung_name("salt", s) for s in SALT_AND_PEPPER],
    ]
    for chain in chains:
        broken += [f"{a} !< {b}" for a, b in itertools.pairwise(chain) if not fd[a] < fd[b]]
    if not fd["grey digits"] <= MAX_GREY_TO_NOISE * fd["Gaussian noise"]:
        broken.append(f"grey digits > {MAX_GREY_TO_NOISE} x Gaussian noise")
    apart = ["Gaussian noise", "blank", "grey digits"]
    for i, a in enumerate(apart):
        for b in apart[i + 1 :]:
            if abs(fd[a] - fd[b]) < MIN_APART * max(fd[a], fd[b]):
                broken.append(f"{a} and {b} less than {MIN_APART:.0%} apart")
    return broken
