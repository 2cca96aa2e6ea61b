"""Command line: `python -m core train|sample|evaluate|experiment` (also installed as the `ddpm` console script).

python -m core train --dataset mnist5k --preset tiny --steps 2000 --out runs/tiny
torchrun --nproc-per-node 2 -m core train --steps 2000 --out runs/tiny2      # N processes (core.distributed)
python -m core sample --checkpoint runs/tiny --n 64 --sampler ddim --steps 50 --out samples.png
python -m core evaluate --checkpoint runs/tiny --n 1000 --sampler ddim --steps 50   # metrics as JSON on stdout
python -m core experiment --vary objective=eps,x0 --time-budget 30 --n 256 --out runs/objectives
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from core.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from core.cli_arguments import (
    MAX_SAMPLES,
    add_sampling_arguments,
    add_training_arguments,
    positive_int,
)
from core.device import describe_device, pick_device
from core.distributed import ProcessGroup, from_environment
from core.experiment import EXPERIMENT_FILE, FIGURE_FILE, VARIABLE_FIELDS, parse_vary, plan_runs, run_experiment
from core.imaging import save_images, save_points
from core.metrics import DIGIT_DATASETS, REFERENCE_SPLITS, score_samples
from core.noise_levels import SPACINGS
from core.progress import format_seconds, progress_bar
from core.sampler_base import Sampler, draw_noise
from core.samplers import SAMPLERS, SamplingDefaults, denoise, each_class
from core.training import TrainConfig, Trainer, TrainingDiverged


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm", description="Train and sample DDPM Explorer's diffusion models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save a checkpoint folder")
    add_training_arguments(train)
    train.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    train.add_argument(
        "--no-training-state",
        action="store_true",
        help="save only the weights and their EMA (a third of the size; to share, not to resume)",
    )
    train.add_argument("--resume", type=Path, default=None, help="checkpoint folder to continue from")
    train.add_argument(
        "--sample-sampler",
        default=None,
        choices=tuple(SAMPLERS),
        help="the sampler the checkpoint records for `sample` and the app (config.json sampling_defaults; ddim)",
    )
    train.add_argument(
        "--sample-steps", type=positive_int, default=None, help="the steps it records (default: 50 DDIM, T DDPM)"
    )
    train.add_argument(
        "--sample-eta",
        type=float,
        default=None,
        help="the DDIM eta it records (default: 1 for --objective x0, measured better; 0 for eps and v)",
    )
    train.add_argument(
        "--sample-spacing",
        default=None,
        choices=SPACINGS,
        help="the noise levels it records (default: the recommended sampler's; trailing with --zero-terminal-snr)",
    )

    sample = commands.add_parser(
        "sample",
        help="sample images from a checkpoint",
        description="Sample images (or 2D points) from a checkpoint. --sampler, --steps and --eta default to the "
        "settings the checkpoint records (config.json sampling_defaults: the shipped models DDIM, 50 steps, eta 1); "
        "one that records none gets DDIM, 50 steps, eta 1 for x0 prediction and 0 for eps and v.",
    )
    add_sampling_arguments(sample, n_default=64)
    sample.add_argument(
        "--out",
        type=Path,
        required=True,
        help="a .png grid or a .npz of uint8 images (2D points: a .png scatter plot or a .npz of float32 points)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="sample from a checkpoint and print quality metrics as JSON (core/metrics.py)",
        description="Sample --n images and print core.metrics.score_samples' scores as JSON on stdout (a plain "
        "summary on stderr). Digits: the Fréchet distance of the feature network's features to as many held-out "
        "mnist5k digits of the reference split (fd), precision and recall (k-NN manifolds, k = 3), each with the "
        "same for real digits against real digits at that n (fd_real_floor, precision_real_floor, "
        "recall_real_floor), the share of confidently classified samples, the entropy and histogram of the "
        "predicted classes. 2D toy model: the sliced Wasserstein distance to the toy set's held-out points "
        "(sliced_wasserstein) and the mean distance from each sample to its nearest held-out point (nn_distance), "
        "each with its real-vs-real floor (sw_real_floor, nn_real_floor). Both: a one-line plain reading "
        "(reading) and the sampling time.",
    )
    add_sampling_arguments(evaluate, n_default=1000)
    evaluate.add_argument(
        "--split",
        default="report",
        choices=REFERENCE_SPLITS,
        help="digits: the held-out digits to compare with (report: for numbers you report; tune: for choosing)",
    )
    experiment = commands.add_parser(
        "experiment",
        help="train one run per combination of --vary values and compare them (core/experiment.py)",
        description="Train one run per combination of the --vary values, each with the same budget and the other "
        "flags as given, then sample --n from one fixed x_T and score them. Writes OUT/<run>/ (the checkpoint and "
        "samples.npz), OUT/experiment.json and OUT/experiment.png. Every run is checked before the first trains.",
    )
    add_training_arguments(experiment)
    experiment.add_argument(
        "--vary",
        action="append",
        required=True,
        metavar="FIELD=A,B",
        help=f"a setting and its values, e.g. objective=eps,x0 (repeat for more); fields: {', '.join(VARIABLE_FIELDS)}",
    )
    experiment.add_argument("--n", type=positive_int, default=256, help=f"samples per run (at most {MAX_SAMPLES})")
    experiment.add_argument("--out", type=Path, required=True, help="the experiment's folder")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the training flags describe (each flag is named after its field); --time-budget alone means
    no step limit."""
    steps = args.steps if args.steps is not None else (None if args.time_budget else TrainConfig().steps)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**{**given, "steps": steps})


def run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`train`, alone or as one of the processes torchrun started (then rank 0 alone logs and saves)."""
    config = config_from_args(args)
    try:
        group = from_environment(config.device)
        trainer = Trainer(config, resume_from=args.resume, group=group)
    except (ValueError, CheckpointError, FileNotFoundError) as error:
        parser.error(str(error))
    try:
        status = train_and_save(trainer, args, group)
        if group is not None:
            group.barrier()  # the ranks leave together: none tears its connections down while rank 0 still saves
        return status
    finally:
        if group is not None:
            group.close()


def train_and_save(trainer: Trainer, args: argparse.Namespace, group: ProcessGroup | None) -> int:
    config = trainer.config
    steps = config.steps
    main_process = group is None or group.is_main
    params = sum(p.numel() for p in trainer.model.parameters())
    data = trainer.data
    what = f"{len(data)} points" if data.kind == "points" else f"{len(data)} images, {data.image_size}px"
    where = describe_device(trainer.device)
    where = f"{group.world_size} processes ({group.backend}, {where})" if group else where
    if main_process:
        print(
            f"training {trainer.model.config['type']} {config.preset} ({params:,} parameters) on {data.name} "
            f"({what}) on {where}",
            file=sys.stderr,
        )
    # tqdm on a terminal, a line every few seconds in a log; nothing from ranks other than 0
    quiet = open(os.devnull, "w") if not main_process else None  # noqa: SIM115 (open while the process lives)
    bar = progress_bar(steps, initial=trainer.step, stream=quiet)
    status = 0
    record = None
    try:
        for record in trainer.run():
            postfix = dict(loss=f"{record.loss:.4f}", lr=f"{record.lr:.2e}", img_s=f"{record.images_per_second:.0f}")
            if steps is None and record.eta_seconds is not None:  # a time budget: the trainer knows the time left
                postfix["left"] = format_seconds(record.eta_seconds)
            bar.set_postfix(**postfix, refresh=False)
            bar.update(1)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted: saving the checkpoint so far", file=sys.stderr)
        status = 130
    finally:
        bar.close()
    if trainer.step > 0 and main_process:
        trainer.save(args.out, with_training_state=not args.no_training_state)
        speed = f", {record.images_per_second:.0f} images/s" if record else ""
        print(f"saved {args.out} at step {trainer.step}{speed}", file=sys.stderr)
    return status


@dataclass
class SamplingPlan:
    """A checked request to sample: the loaded checkpoint, its sampling model, the sampler and the image shape."""

    checkpoint: Checkpoint
    model: nn.Module
    sampler: Sampler
    settings: SamplingDefaults  # the checkpoint's sampling defaults with the user's --sampler, --steps, --eta
    device: torch.device
    shape: tuple[int, ...]  # (C, H, W), or (D,) for 2D points

    @property
    def steps(self) -> int:
        return self.settings.steps


def plan_sampling(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SamplingPlan:
    """Load the checkpoint and check the sampling options shared by `sample` and `evaluate` (exits on errors)."""
    if args.n > MAX_SAMPLES:
        parser.error(f"--n must be at most {MAX_SAMPLES}, got {args.n}")
    try:
        device = pick_device(args.device)
        checkpoint = load_checkpoint(args.checkpoint, device=device)
        settings = checkpoint.sampling_defaults.override(  # what the user gave, else what the checkpoint records
            sampler=args.sampler,
            steps=args.steps,
            eta=args.eta,
            spacing=args.spacing,
            num_timesteps=checkpoint.schedule.num_timesteps,
        )
        clip_x0 = checkpoint.clip_x0 if args.clip_x0 is None else args.clip_x0
        sampler = settings.sampler_for(checkpoint.schedule, checkpoint.objective, clip_x0=clip_x0)
        sampler.levels(settings.steps)  # a sampler that cannot start at these levels says so before any work
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
    return SamplingPlan(checkpoint, model, sampler, settings, device, checkpoint.sample_shape)


def draw_samples(plan: SamplingPlan, args: argparse.Namespace) -> tuple[Tensor, Tensor | None, float]:
    """Sample args.n images in batches with a progress bar: (images (n, C, H, W), labels or None, seconds)."""
    device, steps = plan.device, plan.steps
    generator = torch.Generator().manual_seed(args.seed)
    x_T = draw_noise((args.n, *plan.shape), generator, device, torch.float32)  # (n, C, H, W)
    num_classes = getattr(plan.model, "num_classes", None)
    if args.label is None:
        labels = each_class(num_classes, args.n, device)  # a conditional model: every class equally often
    else:
        labels = torch.full((args.n,), args.label, dtype=torch.long, device=device)
    outputs = []
    start = time.perf_counter()
    with progress_bar(plan.sampler.network_calls(steps) * -(-args.n // args.batch_size)) as bar:
        for first in range(0, args.n, args.batch_size):
            x = x_T[first : first + args.batch_size]
            y = None if labels is None else labels[first : first + args.batch_size]
            for step in denoise(
                plan.model, plan.sampler, x, steps, y=y, guidance_scale=args.guidance, generator=generator
            ):
                bar.update(1)
                x = step.x_t
            outputs.append(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return torch.cat(outputs), labels, time.perf_counter() - start


def describe_settings(settings: SamplingDefaults) -> str:
    """e.g. "ddim, 50 steps, eta 1, leading" or "heun, 5 steps (9 network calls), karras" (eta is DDIM's)."""
    eta = f", eta {settings.eta:g}" if settings.sampler == "ddim" else ""
    calls = settings.network_calls
    calls_note = f" ({calls} network calls)" if calls != settings.steps else ""
    return f"{settings.sampler}, {settings.steps} steps{calls_note}{eta}, {settings.spacing}"


def run_sample(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.out.suffix.lower() not in (".png", ".npz"):
        parser.error(f"--out must end in .png or .npz, got {args.out.name!r}")
    plan = plan_sampling(args, parser)
    images, labels, seconds = draw_samples(plan, args)
    if len(plan.shape) == 1:
        save_points(images, args.out, labels)  # (n, D): a .npz of float32 points or a .png scatter plot
    else:
        save_images(images, args.out, labels)
    print(
        f"wrote {args.n} samples to {args.out} ({describe_settings(plan.settings)}, {seconds:.1f} s on "
        f"{describe_device(plan.device)})",
        file=sys.stderr,
    )
    return 0


def run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Sample, then print the metrics of core/metrics.py as JSON on stdout (progress goes to stderr)."""
    if args.n < 2:
        parser.error(f"--n must be at least 2 for a Fréchet distance, got {args.n}")
    plan = plan_sampling(args, parser)
    dataset = plan.checkpoint.config.get("dataset", {})
    points = dataset.get("kind") == "points"
    if not points and (dataset.get("name", "mnist5k") not in DIGIT_DATASETS or plan.shape[:1] != (1,)):
        parser.error(
            f"evaluate judges digits ({', '.join(DIGIT_DATASETS)}) with its reference classifier, or 2D toy points; "
            f"this checkpoint was trained on {dataset.get('name')!r}"
        )
    samples, _, seconds = draw_samples(plan, args)
    try:  # digits: as many reference digits as samples, a fixed subset (seed 0); points: the held-out points
        metrics = score_samples(samples, dataset.get("name", "mnist5k"), split=args.split)
    except ValueError as error:  # e.g. NaN samples from a diverged model
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = {
        **metrics,
        "sampling_seconds": round(seconds, 3),
        "samples_per_second": round(args.n / seconds, 1),
        "checkpoint": str(args.checkpoint),
        "checkpoint_step": plan.checkpoint.step,
        "sampler": plan.settings.sampler,
        "steps": plan.steps,
        "network_calls": plan.settings.network_calls,
        "eta": plan.settings.eta,
        "spacing": plan.settings.spacing,
        "seed": args.seed,
        "device": str(plan.device),
    }
    print(json.dumps(report, indent=2))
    print(summary_line(metrics), file=sys.stderr)
    return 0


def summary_line(scores: dict) -> str:
    """The scores in one line for people, ending with the plain reading."""
    if scores["kind"] == "points":
        parts = [
            f"sliced W2 {scores['sliced_wasserstein']:.4f} (real {scores['sw_real_floor']:.4f})",
            f"nearest-neighbour distance {scores['nn_distance']:.4f} (real {scores['nn_real_floor']:.4f})",
        ]
    else:
        parts = [
            f"FD {scores['fd']:.1f} (real {scores['fd_real_floor']:.1f})",
            f"precision {scores['precision']:.2f} (real {scores['precision_real_floor']:.2f})",
            f"recall {scores['recall']:.2f} (real {scores['recall_real_floor']:.2f})",
            f"confident {scores['confident_fraction']:.0%}",
        ]
    return f"n = {scores['n']}: " + ", ".join(parts) + f": {scores['reading']}"


def run_experiment_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Plan every run (refusing bad --vary values before any training), run them, print where the records are."""
    if args.n > MAX_SAMPLES:
        parser.error(f"--n must be at most {MAX_SAMPLES}, got {args.n}")
    try:
        runs = plan_runs(config_from_args(args), parse_vary(args.vary))
    except ValueError as error:
        parser.error(str(error))
    print(f"{len(runs)} runs: {', '.join(run.name for run in runs)}", file=sys.stderr)
    report = run_experiment(runs, n=args.n, out=args.out, seed=args.seed)
    for run in report["runs"]:
        reading = run["metrics"]["reading"] if run["metrics"] else "no metric for this data"
        print(f"{run['name']}: {run['steps']} steps, last loss {run['loss'][-1]:.4f}; {reading}", file=sys.stderr)
    print(f"wrote {args.out / EXPERIMENT_FILE} and {args.out / FIGURE_FILE}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return run_train(args, parser)
    if args.command == "evaluate":
        return run_evaluate(args, parser)
    if args.command == "experiment":
        return run_experiment_command(args, parser)
    return run_sample(args, parser)


if __name__ == "__main__":
    sys.exit(main())
