"""Training throughput and sampling time of our U-Net presets, side by side with diffusers' UNet2DModel.

For each preset ("tiny", "seed", "small"; `core.unet.make_unet(preset, in_channels=1)`) and for diffusers'
UNet2DModel at the closest matching configuration (same widths, residual blocks per level, attention levels,
time-embedding width; see `diffusers_config`), it measures on the CPU:

* training throughput, images/s: full AdamW steps on batches of 1x32x32 images (default 64), eps objective
  on the linear schedule (T = 1000). Ours: `core.diffusion.training_loss`; diffusers: the same loss by hand
  (noise, `DDPMScheduler.add_noise`, MSE of `model(x_t, t).sample` against the noise). After a few warm-up
  steps, steps run for a fixed wall-clock window per model (--seconds), so slow models get as much time as
  fast ones; the median step time is reported too.
* sampling time: 16 images, 50 deterministic DDIM steps under torch.no_grad in eval mode (ours:
  `core.samplers.DDIMSampler` + `denoise`; diffusers: `DDIMScheduler` + a UNet2DModel loop), seconds per run,
  median of --sample-runs runs.

It prints a markdown table and writes it, with the machine description and the command line, to
benchmarks/RESULTS.md under "## Training throughput (benchmarks/train_throughput.py)" (replacing that section,
keeping the rest of the file). Run it on a quiet machine, from the repository root:

    python benchmarks/train_throughput.py              # all presets, 20 s per model (10-15 min on 2 cores)
    python benchmarks/train_throughput.py --seconds 1 --sample-runs 1 --presets tiny --no-write   # smoke test
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from common import (
    RESULTS_PATH,
    busy_warning,
    command_line,
    machine_description,
    section_header,
    time_calls,
    write_section,
)
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from core.classic_samplers import DDIMSampler
from core.device import available_cores
from core.diffusion import training_loss
from core.samplers import sample
from core.schedules import NoiseSchedule, make_schedule
from core.training import TrainConfig
from core.unet import PRESETS, UNet, group_count, make_unet

try:
    import diffusers
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit("this benchmark compares against diffusers: pip install -e '.[test]'") from error

SECTION_HEADING = "## Training throughput (benchmarks/train_throughput.py)"
IMAGE_SIZE = 32
CHANNELS = 1
SAMPLE_IMAGES = 16
DDIM_STEPS = 50
REFERENCE = "ours-tiny"  # the "ratio vs" column divides by this model's throughput when it was measured


@dataclass
class Contender:
    """One model under test, with the two workloads it is timed on."""

    name: str  # "ours-tiny", "diffusers-tiny", ...
    preset: str
    model: nn.Module
    loss: Callable[[Tensor], Tensor]  # clean batch x_0 -> scalar eps-MSE loss
    sample: Callable[[Tensor, int], Tensor]  # (x_T, num_steps) -> images, DDIM, eta = 0
    description: str  # how the model was configured


@dataclass
class Result:
    name: str
    preset: str
    params: int
    train_gflop: float  # forward + backward GFLOP per image, counted by torch's FlopCounterMode
    images_per_second: float
    median_step: float  # seconds
    steps: int  # timed optimizer steps
    window: float  # seconds the timed steps took in all
    sample_seconds: float  # median seconds for SAMPLE_IMAGES images x DDIM_STEPS steps
    description: str


# ------------------------------------------------------------------------------------------ the contenders


def ours(preset: str, schedule: NoiseSchedule) -> Contender:
    model = make_unet(preset, in_channels=CHANNELS)
    sampler = DDIMSampler(schedule, eta=0.0)

    def loss(x0: Tensor) -> Tensor:
        return training_loss(model, schedule, x0, objective="eps").loss

    def run_sampler(x_t: Tensor, num_steps: int) -> Tensor:
        return sample(model, sampler, x_t, num_steps)

    return Contender(f"ours-{preset}", preset, model, loss, run_sampler, describe(PRESETS[preset]))


def diffusers_config(unet: UNet) -> dict:
    """UNet2DModel arguments closest to one of our U-Nets: the same widths, blocks per level, attention
    levels, middle attention and time-embedding width; one GroupNorm group count (diffusers has a single one)
    that divides every width; attention heads of the same size as ours (4 heads where we have attention)."""
    cfg = unet.cfg
    widths = tuple(cfg.base_channels * m for m in cfg.channel_mults)
    levels = range(len(widths))
    attention = cfg.attention_levels
    attention_widths = [widths[i] for i in cfg.attention_levels] + ([widths[-1]] if cfg.mid_attention else [])
    return dict(
        sample_size=IMAGE_SIZE,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels or cfg.in_channels,
        block_out_channels=widths,
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if i in attention else "DownBlock2D" for i in levels),
        up_block_types=tuple("AttnUpBlock2D" if i in attention else "UpBlock2D" for i in reversed(levels)),
        add_attention=cfg.mid_attention,
        attention_head_dim=min(attention_widths) // 4 if attention_widths else None,
        norm_num_groups=group_count(math.gcd(*widths)),
        time_embedding_dim=cfg.time_emb_dim,
        dropout=cfg.dropout,
    )


def theirs(preset: str, schedule: NoiseSchedule) -> Contender:
    config = diffusers_config(make_unet(preset, in_channels=CHANNELS))
    model = UNet2DModel(**config)
    scheduler_config = {k: v for k, v in schedule.to_diffusers_config().items() if not k.startswith("_")}
    train_scheduler = DDPMScheduler(**scheduler_config)
    ddim = DDIMScheduler(**scheduler_config)  # "leading" spacing and alpha-bar_prev = 1 at the end, like ours

    def loss(x0: Tensor) -> Tensor:
        noise = torch.randn_like(x0)
        t = torch.randint(0, train_scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        x_t = train_scheduler.add_noise(x0, noise, t)
        return F.mse_loss(model(x_t, t).sample, noise)

    def run_sampler(x_t: Tensor, num_steps: int) -> Tensor:
        ddim.set_timesteps(num_steps)
        for t in ddim.timesteps:
            x_t = ddim.step(model(x_t, t).sample, t, x_t, eta=0.0).prev_sample
        return x_t

    return Contender(f"diffusers-{preset}", preset, model, loss, run_sampler, describe(config))


def describe(config: dict) -> str:
    return ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in config.items())


# -------------------------------------------------------------------------------------------------- timing


def measure(contender: Contender, args: argparse.Namespace) -> Result:
    model = contender.model
    torch.manual_seed(0)
    x0 = torch.rand(args.batch_size, CHANNELS, IMAGE_SIZE, IMAGE_SIZE) * 2 - 1  # content does not matter here
    optimizer = torch.optim.AdamW(model.parameters(), lr=TrainConfig().lr)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        contender.loss(x0).backward()
        optimizer.step()

    model.train()
    with FlopCounterMode(display=False) as counter:  # the cost of one training image, machine-independent
        contender.loss(x0[:2]).backward()
    optimizer.zero_grad(set_to_none=True)
    step_times = time_calls(train_step, warmup=args.warmup_steps, min_calls=args.min_steps, min_seconds=args.seconds)
    window = sum(step_times)

    x_T = torch.randn(SAMPLE_IMAGES, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    model.eval()
    with torch.no_grad():
        contender.sample(x_T, 2)  # warm-up: allocations of the no-grad, eval-mode, batch-16 path
        sample_times = time_calls(lambda: contender.sample(x_T, DDIM_STEPS), warmup=0, min_calls=args.sample_runs)

    return Result(
        name=contender.name,
        preset=contender.preset,
        params=sum(p.numel() for p in model.parameters()),
        train_gflop=counter.get_total_flops() / 2 / 1e9,
        images_per_second=len(step_times) * args.batch_size / window,
        median_step=statistics.median(step_times),
        steps=len(step_times),
        window=window,
        sample_seconds=statistics.median(sample_times),
        description=contender.description,
    )


# ----------------------------------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def report(
    results: Sequence[Result], args: argparse.Namespace, machine: str, command: str, warning: str | None = None
) -> str:
    by_name = {r.name: r for r in results}
    reference = by_name.get(REFERENCE, results[0])
    lines = [
        *section_header(SECTION_HEADING, machine, command, warning),
        f"Training: AdamW steps on batches of {args.batch_size} random {CHANNELS}x{IMAGE_SIZE}x{IMAGE_SIZE} "
        f"images, eps objective, linear schedule (T = 1000); {args.warmup_steps} warm-up steps, then a "
        f"{args.seconds:g} s window (at least {args.min_steps} steps) per model. Sampling: {SAMPLE_IMAGES} "
        f"images, {DDIM_STEPS} DDIM steps (eta = 0) under torch.no_grad, median of {args.sample_runs} "
        "run(s). "
        f"Ratio = train images/s / {reference.name}'s.",
        "",
        f"| model | params | train GFLOP/image | train images/s | median step (ms) | timed steps "
        f"| ratio vs {reference.name} | sample {SAMPLE_IMAGES}x DDIM-{DDIM_STEPS} (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [
            r.name,
            f"{r.params:,}",
            f"{r.train_gflop:.2f}",
            f"{r.images_per_second:.1f}",
            f"{r.median_step * 1e3:.1f}",
            str(r.steps),
            ratio(r.images_per_second, reference.images_per_second),
            f"{r.sample_seconds:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Key ratios:", ""]
    tiny, seed = by_name.get("ours-tiny"), by_name.get("ours-seed")
    if tiny and seed:
        speedup = tiny.images_per_second / seed.images_per_second
        verdict = "met" if speedup >= 10 else "NOT met"
        sampling = ratio(seed.sample_seconds, tiny.sample_seconds)
        flops = ratio(seed.train_gflop, tiny.train_gflop)
        lines.append(
            f"- ours-tiny trains {speedup:.1f}x as many images/s as ours-seed "
            f"(target >= 10x: {verdict}; ours-seed needs {flops} its training FLOPs per image); "
            f"ours-tiny samples {sampling} as fast."
        )
    for preset in dict.fromkeys(r.preset for r in results):
        mine, other = by_name.get(f"ours-{preset}"), by_name.get(f"diffusers-{preset}")
        if mine and other:
            lines.append(
                f"- {preset}: ours trains {ratio(mine.images_per_second, other.images_per_second)} the "
                f"images/s of diffusers' UNet2DModel and samples "
                f"{ratio(other.sample_seconds, mine.sample_seconds)} as fast; parameters {mine.params:,} "
                f"(ours) vs {other.params:,} (diffusers, {ratio(other.params, mine.params)})."
            )
    lines += ["", "Configurations:", ""]
    lines += [f"- {r.name}: {r.description}" for r in results]
    lines += [
        "",
        "The diffusers models are the closest UNet2DModel to each preset, not an identical network: "
        "diffusers keeps a skip after every residual block and downsampler, so each of its up levels has "
        "layers_per_block + 1 residual blocks (ours: num_res_blocks), it uses one GroupNorm group count for "
        "all widths (ours: up to 32 per width), and its sinusoidal embedding has block_out_channels[0] "
        "features (ours: time_emb_dim). Compare the parameter counts.",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="timed training window per model, after warm-up (default 20)"
    )
    parser.add_argument(
        "--sample-runs",
        type=int,
        default=3,
        help=f"timed {SAMPLE_IMAGES}-image DDIM-{DDIM_STEPS} runs per model; the median is reported (default 3)",
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        choices=list(PRESETS),
        default=["tiny", "seed", "small"],
        help="which presets (each with its diffusers counterpart) to measure",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=TrainConfig().batch_size,
        help="training batch size (default: TrainConfig's, 64)",
    )
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed optimizer steps per model (default 3)")
    parser.add_argument(
        "--min-steps", type=int, default=3, help="timed optimizer steps at least, however long they take (default 3)"
    )
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not update {RESULTS_PATH.name}")
    args = parser.parse_args(argv)
    for name in ("sample_runs", "batch_size", "min_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_steps < 0 or not args.seconds >= 0:
        parser.error("--warmup-steps and --seconds must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    machine = machine_description(threads, f"diffusers {diffusers.__version__}")
    warning = busy_warning()
    command = command_line(__file__, argv)
    print(machine, flush=True)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    schedule = make_schedule("linear", 1000)
    results = []
    for preset in dict.fromkeys(args.presets):
        for build in (ours, theirs):
            contender = build(preset, schedule)
            print(f"measuring {contender.name} ...", flush=True)
            result = measure(contender, args)
            print(
                f"  {result.params:,} params, {result.images_per_second:.1f} images/s over "
                f"{result.steps} steps, sampling {result.sample_seconds:.2f} s",
                flush=True,
            )
            results.append(result)
            del contender
    section = report(results, args, machine, command, warning)
    print()
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section)
        print(f"written to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
