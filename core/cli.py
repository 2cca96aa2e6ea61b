"""Command line: `python -m core train|sample` (also installed as the `ddpm` console script).

python -m core train --dataset mnist5k --preset tiny --steps 2000 --out runs/tiny
python -m core sample --checkpoint runs/tiny --n 64 --sampler ddim --steps 50 --out samples.png
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from core.checkpoint import CheckpointError, load_checkpoint
from core.data import DATASET_NAMES
from core.diffusion import OBJECTIVES, WEIGHTINGS
from core.imaging import save_images
from core.samplers import SAMPLERS, SPACINGS, denoise, draw_noise, make_sampler
from core.schedules import SCHEDULE_NAMES
from core.training import TrainConfig, Trainer, TrainingDiverged, pick_device
from core.unet import PRESETS

MAX_SAMPLES = 1024


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Train and sample DDPM Explorer's diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save a checkpoint folder")
    defaults = TrainConfig()
    train.add_argument("--dataset", default=defaults.dataset, choices=DATASET_NAMES)
    train.add_argument("--preset", default=defaults.preset, choices=tuple(PRESETS), help="U-Net size")
    train.add_argument("--image-size", type=positive_int, default=defaults.image_size)
    train.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"optimizer steps (default {defaults.steps}, or unlimited with --time-budget)",
    )
    train.add_argument("--time-budget", type=positive_float, default=None, help="seconds of training")
    train.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    train.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak learning rate")
    train.add_argument("--warmup-steps", type=non_negative_int, default=defaults.warmup_steps)
    train.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    train.add_argument("--schedule", default=defaults.schedule, choices=SCHEDULE_NAMES)
    train.add_argument("--objective", default=defaults.objective, choices=OBJECTIVES)
    train.add_argument("--weighting", default=defaults.weighting, choices=WEIGHTINGS)
    train.add_argument("--class-conditional", action="store_true", help="train with labels (for guidance)")
    train.add_argument("--p-uncond", type=float, default=defaults.p_uncond, help="label dropout for CFG")
    train.add_argument("--seed", type=non_negative_int, default=defaults.seed)
    train.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    train.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint folder to continue from")

    sample = commands.add_parser("sample", help="sample images from a checkpoint")
    sample.add_argument("--checkpoint", type=Path, required=True)
    sample.add_argument("--n", type=positive_int, default=64, help=f"number of images (at most {MAX_SAMPLES})")
    sample.add_argument("--sampler", default="ddim", choices=tuple(SAMPLERS))
    sample.add_argument("--steps", type=positive_int, default=None, help="model calls (default: 50 DDIM, T DDPM)")
    sample.add_argument("--eta", type=float, default=0.0, help="DDIM noise: 0 deterministic, 1 DDPM-like")
    sample.add_argument("--spacing", default="leading", choices=SPACINGS)
    sample.add_argument(
        "--clip-x0",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="clamp the predicted clean image to [-1, 1] at each step",
    )
    sample.add_argument("--seed", type=non_negative_int, default=0)
    sample.add_argument("--label", type=non_negative_int, default=None, help="class to draw (conditional models)")
    sample.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    sample.add_argument("--device", default="auto")
    sample.add_argument("--batch-size", type=positive_int, default=256, help="images per network call")
    sample.add_argument("--out", type=Path, required=True, help="a .png grid or a .npz of uint8 images")
    return parser


def run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    steps = args.steps if args.steps is not None else (None if args.time_budget else TrainConfig().steps)
    config = TrainConfig(
        dataset=args.dataset,
        image_size=args.image_size,
        preset=args.preset,
        class_conditional=args.class_conditional,
        p_uncond=args.p_uncond,
        schedule=args.schedule,
        objective=args.objective,
        weighting=args.weighting,
        steps=steps,
        time_budget=args.time_budget,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        seed=args.seed,
        device=args.device,
    )
    try:
        trainer = Trainer(config, resume_from=args.resume)
    except (ValueError, CheckpointError, FileNotFoundError) as error:
        parser.error(str(error))
    params = sum(p.numel() for p in trainer.model.parameters())
    print(
        f"training {config.preset} ({params:,} parameters) on {trainer.data.name} "
        f"({len(trainer.data)} images, {trainer.data.image_size}px) on {trainer.device}",
        file=sys.stderr,
    )
    bar = tqdm(total=steps, initial=trainer.step, unit="step", dynamic_ncols=True)
    status = 0
    record = None
    try:
        for record in trainer.run():
            bar.update(1)
            bar.set_postfix(loss=f"{record.loss:.4f}", lr=f"{record.lr:.2e}", img_s=f"{record.images_per_second:.0f}")
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted: saving the checkpoint so far", file=sys.stderr)
        status = 130
    finally:
        bar.close()
    if trainer.step > 0:
        trainer.save(args.out)
        speed = f", {record.images_per_second:.0f} images/s" if record else ""
        print(f"saved {args.out} at step {trainer.step}{speed}", file=sys.stderr)
    return status


def run_sample(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.n > MAX_SAMPLES:
        parser.error(f"--n must be at most {MAX_SAMPLES}, got {args.n}")
    if args.out.suffix.lower() not in (".png", ".npz"):
        parser.error(f"--out must end in .png or .npz, got {args.out.name!r}")
    try:
        device = pick_device(args.device)
        checkpoint = load_checkpoint(args.checkpoint, device=device)
        num_timesteps = checkpoint.schedule.num_timesteps
        steps = args.steps or (50 if args.sampler == "ddim" else num_timesteps)
        if steps > num_timesteps:
            raise ValueError(f"--steps must be at most {num_timesteps} (the model's T), got {steps}")
        sampler = make_sampler(
            args.sampler,
            checkpoint.schedule,
            eta=args.eta,
            objective=checkpoint.objective,
            clip_x0=args.clip_x0,
            spacing=args.spacing,
        )
        model = checkpoint.sampling_model.eval()
        num_classes = getattr(model, "num_classes", None)
        if args.label is not None and not num_classes:
            raise ValueError("--label needs a class-conditional checkpoint; this one is unconditional")
        if args.label is not None and args.label >= num_classes:
            raise ValueError(f"--label must be in 0..{num_classes - 1}")
        if args.guidance < 0 or args.guidance != args.guidance:
            raise ValueError(f"--guidance must be >= 0, got {args.guidance}")
    except (ValueError, CheckpointError) as error:
        parser.error(str(error))
    dataset = checkpoint.config.get("dataset", {})
    shape = (dataset.get("channels", 1), dataset.get("image_size", 32), dataset.get("image_size", 32))
    generator = torch.Generator().manual_seed(args.seed)
    x_T = draw_noise((args.n, *shape), generator, device, torch.float32)  # (n, C, H, W)
    labels = None if args.label is None else torch.full((args.n,), args.label, dtype=torch.long, device=device)
    outputs = []
    start = time.perf_counter()
    with tqdm(total=steps * -(-args.n // args.batch_size), unit="step", dynamic_ncols=True) as bar:
        for first in range(0, args.n, args.batch_size):
            x = x_T[first : first + args.batch_size]
            y = None if labels is None else labels[first : first + args.batch_size]
            for step in denoise(model, sampler, x, steps, y=y, guidance_scale=args.guidance, generator=generator):
                bar.update(1)
                x = step.x_t
            outputs.append(x)
    images = torch.cat(outputs)
    save_images(images, args.out, labels)
    print(
        f"wrote {args.n} samples to {args.out} ({args.sampler}, {steps} steps, "
        f"{time.perf_counter() - start:.1f} s on {device})",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return run_train(args, parser)
    return run_sample(args, parser)


if __name__ == "__main__":
    sys.exit(main())
