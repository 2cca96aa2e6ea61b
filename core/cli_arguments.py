"""The flags of `python -m core` (core/cli.py): checked number types, the training flags (each named after its
core.training.TrainConfig field, so `train` and `experiment` build a config from them by name) and the sampling
flags that `sample` and `evaluate` share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from core.data import DATASET_NAMES
from core.device import PRECISIONS
from core.diffusion import OBJECTIVES, TIMESTEP_SAMPLINGS, WEIGHTINGS
from core.noise_levels import SPACINGS
from core.samplers import DEFAULT_GUIDANCE, SAMPLERS
from core.schedules import SCHEDULE_NAMES
from core.training import TrainConfig
from core.unet import PRESETS

MAX_SAMPLES = 1024  # images or points one `sample` or `evaluate` may ask for


def number_type(kind: type, description: str, accept: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse `type=` that parses `kind` and refuses values failing `accept`, naming what was expected."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {description}, got {value}")
        return value

    parse.__name__ = description
    return parse


positive_int = number_type(int, "a positive integer", lambda v: v >= 1)
non_negative_int = number_type(int, "an integer >= 0", lambda v: v >= 0)
positive_float = number_type(float, "a positive finite number", lambda v: 0 < v < float("inf"))


def add_sampling_arguments(command: argparse.ArgumentParser, n_default: int) -> None:
    """The options `sample` and `evaluate` share: the checkpoint, how many images, the sampler and its seed."""
    command.add_argument("--checkpoint", type=Path, required=True)
    command.add_argument("--n", type=positive_int, default=n_default, help=f"number of images (at most {MAX_SAMPLES})")
    command.add_argument(
        "--sampler",
        default=None,
        choices=tuple(SAMPLERS),
        help="default: the checkpoint's (config.json sampling_defaults; ddim for one that records none)",
    )
    command.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="sampler steps (default: the checkpoint's; with another --sampler than its, that sampler's usual: "
        "T for DDPM, 50 for DDIM, 20 for the others); network calls = steps, 2 steps - 1 for Heun",
    )
    command.add_argument(
        "--eta",
        type=float,
        default=None,
        help="DDIM noise, 0 deterministic to 1 DDPM-like (default: the checkpoint's; the shipped models: 1)",
    )
    command.add_argument(
        "--spacing",
        default=None,
        choices=SPACINGS,
        help="the noise levels: whole timesteps (linspace, leading, trailing) or Karras sigmas (default: the "
        "checkpoint's)",
    )
    command.add_argument(
        "--clip-x0",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="clamp the predicted clean image to [-1, 1] at each step (default: the checkpoint's: on for this "
        "project's, a diffusers scheduler's clip_sample)",
    )
    command.add_argument("--seed", type=non_negative_int, default=0)
    command.add_argument(
        "--label",
        type=non_negative_int,
        default=None,
        help="class to draw (conditional models; default: each class in turn, 0, 1, 2, ...)",
    )
    command.add_argument(
        "--guidance",
        type=float,
        default=DEFAULT_GUIDANCE,
        help=f"classifier-free guidance scale of a conditional model (default {DEFAULT_GUIDANCE:g}; 1: plain "
        "conditional, 0: ignore the class)",
    )
    command.add_argument("--device", default="auto")
    command.add_argument("--batch-size", type=positive_int, default=256, help="images per network call")


def add_training_arguments(command: argparse.ArgumentParser) -> None:
    """The flags that make a TrainConfig (data, network, schedule, objective, optimizer, length, device)."""
    defaults = TrainConfig()
    command.add_argument(
        "--dataset",
        default=defaults.dataset,
        choices=DATASET_NAMES,
        help="images: mnist5k (bundled), mnist, fashion_mnist, cifar10 (downloaded once; cache: $DDPM_EXPLORER_DATA "
        "or ~/.cache/ddpm-explorer/datasets), folder (--data-path); 2D points: moons, swiss_roll, eight_gaussians, "
        "checkerboard, spiral",
    )
    command.add_argument(
        "--data-path", default=None, help="for --dataset folder: a folder or .zip of at least 8 pictures"
    )
    command.add_argument(
        "--channels", type=int, choices=(1, 3), default=None, help="for --dataset folder (default: from the pictures)"
    )
    command.add_argument(
        "--preset", default=defaults.preset, choices=tuple(PRESETS), help="model size (U-Net, or MLP for points)"
    )
    command.add_argument(
        "--image-size",
        type=positive_int,
        default=defaults.image_size,
        help="side in pixels (default: the dataset's own, 28 for digits, 32 for CIFAR-10 and own pictures)",
    )
    command.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"optimizer steps (default {defaults.steps}, or unlimited with --time-budget)",
    )
    command.add_argument("--time-budget", type=positive_float, default=None, help="seconds of training")
    command.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    command.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak learning rate")
    command.add_argument("--warmup-steps", type=non_negative_int, default=defaults.warmup_steps)
    command.add_argument(
        "--min-lr-ratio", type=float, default=defaults.min_lr_ratio, help="the cosine decay ends at lr x this"
    )
    command.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    command.add_argument("--schedule", default=defaults.schedule, choices=SCHEDULE_NAMES, help="the noise schedule")
    command.add_argument(
        "--num-timesteps", type=positive_int, default=defaults.num_timesteps, help="T, the number of noising steps"
    )
    command.add_argument(
        "--beta-start", type=float, default=defaults.beta_start, help="first beta (linear, sigmoid, scaled_linear)"
    )
    command.add_argument(
        "--beta-end", type=float, default=defaults.beta_end, help="last beta (linear, sigmoid, scaled_linear)"
    )
    command.add_argument("--cosine-s", type=float, default=defaults.cosine_s, help="cosine's offset s (0.008)")
    command.add_argument(
        "--zero-terminal-snr",
        action="store_true",
        help="rescale the schedule to end in pure noise (Lin et al. 2023); needs --objective x0 or v",
    )
    command.add_argument("--objective", default=defaults.objective, choices=OBJECTIVES)
    command.add_argument("--weighting", default=defaults.weighting, choices=WEIGHTINGS)
    command.add_argument(
        "--min-snr-gamma",
        type=positive_float,
        default=defaults.min_snr_gamma,
        help="the cap gamma of --weighting min_snr (Hang et al. 2023 use 5)",
    )
    command.add_argument(
        "--timestep-sampling",
        default=defaults.timestep_sampling,
        choices=TIMESTEP_SAMPLINGS,
        help="which noise levels the loss practises: logit_normal (most in the middle) or uniform (Ho et al.)",
    )
    command.add_argument(
        "--class-conditional",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train with labels, for guidance (default: when the dataset has labels, as the digits do)",
    )
    command.add_argument(
        "--p-uncond",
        type=float,
        default=defaults.p_uncond,
        help="label dropout for classifier-free guidance, 0..1 (conditional models)",
    )
    command.add_argument("--seed", type=non_negative_int, default=defaults.seed)
    command.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    command.add_argument(
        "--num-threads",
        type=positive_int,
        default=None,
        help="CPU threads (default: one per available core, shared out among the processes torchrun starts here)",
    )
    command.add_argument(
        "--precision",
        default=defaults.precision,
        choices=PRECISIONS,
        help="auto: bf16 autocast where the hardware runs it natively (CUDA, CPUs with bf16 units), else fp32",
    )
