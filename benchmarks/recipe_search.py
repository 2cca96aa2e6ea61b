"""The live-training recipe search: which choices make a 60-second CPU run of "tiny" draw the best digits.

Each variant is the search's base recipe (the shipped TrainConfig defaults, see BASE) with a few fields
changed (and, for model-shape variants, the "tiny" U-Net with some constructor arguments changed). It trains on
the bundled mnist5k training digits for --budget seconds of wall clock (default 60), draws --n samples (default
500) from its EMA weights with 50 DDIM steps (eta = 0, x0 clipped, fixed seed; timed separately) and scores them
with `core.metrics.evaluate_samples` against the "tune" split of the held-out digits (SPLIT: choosing a recipe is
tuning; the "report" split stays for the numbers the project reports), next to the real-vs-real FD floor at the
same n on that split.

Results accumulate: each run replaces the rows of the variants it ran in the "## Live-training recipe" section of
benchmarks/RESULTS.md and keeps the others, so rounds of a greedy search can be run one after another:

    python benchmarks/recipe_search.py --list                        # the variants and what each changes
    python benchmarks/recipe_search.py --only fp32 default           # two variants, ~3 minutes
    python benchmarks/recipe_search.py                               # every variant (~1.5 min each on 2 cores)

The machine must be quiet: two runs at once on 2 cores change each other's step counts several-fold.

This is round 2, on the U-Net that sees t and y (the fix of core/unet.py: the embedding is a shift after the
norm). Round 1 ran on the old block, which erased the embedding in "tiny" (a denoiser blind to the noise level);
its table stays in RESULTS.md under "## Live-training recipe (benchmarks/recipe_search.py)" as the record of how
the defaults were first chosen (its base was these defaults with EMA 0.995).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import RESULTS_PATH, busy_warning, command_line, machine_description, replace_model, section_header

from core.data import load_dataset
from core.device import available_cores
from core.metrics import evaluate_samples, real_floor
from core.sampler_base import draw_noise
from core.samplers import make_sampler, sample
from core.training import TrainConfig, Trainer
from core.unet import make_unet

SPLIT = "tune"  # the held-out digits for choosing (core.metrics.REFERENCE_SPLITS)
SECTION = "## Live-training recipe, round 2: the U-Net that sees t (benchmarks/recipe_search.py)"
DDIM_STEPS = 50
SAMPLE_SEED = 1234


@dataclass(frozen=True)
class Variant:
    name: str
    why: str
    config: dict = field(default_factory=dict)  # TrainConfig fields that differ from the defaults
    model: dict = field(default_factory=dict)  # "tiny" U-Net constructor arguments that differ
    sampling: dict = field(default_factory=dict)  # make_sampler arguments that differ (the DDIM-50 samples)


# The base every variant changes: the shipped TrainConfig defaults (round 1's base had EMA 0.995).
BASE: dict = {}

VARIANTS: tuple[Variant, ...] = (
    Variant("base", "the base recipe"),
    Variant("repeat", "the base recipe again: the run-to-run spread"),
    Variant("fp32", "float32 instead of bf16 autocast", {"precision": "fp32"}),
    Variant("32px", "32x32 (digits padded with background) instead of their own 28x28", {"image_size": 32}),
    Variant("fp32-32px", "float32 at 32x32 (the recipe before this search)", {"precision": "fp32", "image_size": 32}),
    Variant(
        "eps-linear",
        "eps objective on the linear schedule (DDPM's original)",
        {"objective": "eps", "schedule": "linear"},
    ),
    Variant("v", "v objective", {"objective": "v"}),
    Variant("eps", "eps objective on the cosine schedule", {"objective": "eps"}),
    Variant("min-snr", "min-SNR-5 loss weighting", {"weighting": "min_snr"}),
    Variant("linear", "the linear schedule (more of the steps at high noise)", {"schedule": "linear"}),
    Variant("sigmoid", "the sigmoid schedule", {"schedule": "sigmoid"}),
    Variant("lr1e-3", "peak lr 1e-3", {"lr": 1e-3}),
    Variant("lr4e-3", "peak lr 4e-3", {"lr": 4e-3}),
    Variant("lr6e-3", "peak lr 6e-3", {"lr": 6e-3}),
    Variant("batch32", "batch 32", {"batch_size": 32}),
    Variant("batch128", "batch 128", {"batch_size": 128}),
    Variant("batch128-lr4e-3", "batch 128 at peak lr 4e-3", {"batch_size": 128, "lr": 4e-3}),
    Variant("ema0.99", "EMA decay 0.99", {"ema_decay": 0.99}),
    Variant("ema0.995", "EMA decay 0.995", {"ema_decay": 0.995}),
    Variant("ema0.999", "EMA decay 0.999", {"ema_decay": 0.999}),
    Variant("ema0.98", "EMA decay 0.98", {"ema_decay": 0.98}),
    Variant("no-clip", "no gradient clipping", {"grad_clip": 0.0}),
    Variant("no-ema", "no EMA (sample the raw weights)", {"ema_decay": 0.0}),
    Variant("min-lr0", "cosine decay to 0 instead of 0.1 lr", {"min_lr_ratio": 0.0}),
    Variant("constant-lr", "no decay (min_lr_ratio 1)", {"min_lr_ratio": 1.0}),
    Variant("warmup200", "200 warm-up steps", {"warmup_steps": 200}),
    Variant("eta1", "DDIM-50 with eta 1 (fresh noise at every step, like DDPM)", sampling={"eta": 1.0}),
    Variant("linspace", "DDIM-50 timesteps spread from T-1 to 0 (linspace)", sampling={"spacing": "linspace"}),
    Variant("trailing", "DDIM-50 timesteps from T-1 down to T/50-1 (trailing)", sampling={"spacing": "trailing"}),
    Variant("2-blocks", "two residual blocks per level", model={"num_res_blocks": 2}),
    Variant("mults124", "channel multipliers (1, 2, 4)", model={"channel_mults": (1, 2, 4)}),
    Variant("2-levels", "two levels (1, 2) instead of three", model={"channel_mults": (1, 2)}),
    Variant("base32", "32 base channels", model={"base_channels": 32}),
    Variant("mid-attention", "self-attention in the middle block", model={"mid_attention": True}),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}


@dataclass
class Row:
    variant: Variant
    steps: int
    images_per_second: float
    metrics: dict
    sampling_seconds: float


def run_variant(variant: Variant, budget: float, n: int, seed: int, threads: int | None) -> Row:
    config = TrainConfig(
        **{"time_budget": budget, "steps": None, "seed": seed, "num_threads": threads, **BASE, **variant.config}
    )
    data = load_dataset(config.dataset, split="train", image_size=config.image_size)
    trainer = Trainer(config, dataset=data)
    if variant.model:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            replace_model(trainer, make_unet(config.preset, in_channels=data.channels, **variant.model))
    last = None
    for record in trainer.run():
        last = record
    sampler = make_sampler("ddim", trainer.schedule, objective=config.objective, clip_x0=True, **variant.sampling)
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    x_T = draw_noise((n, *data.tensor.shape[1:]), generator, "cpu", torch.float32)
    start = time.perf_counter()
    with torch.no_grad():
        samples = sample(trainer.ema_model, sampler, x_T, DDIM_STEPS, generator=generator)
    sampling_seconds = time.perf_counter() - start
    metrics = evaluate_samples(samples, seed=seed, split=SPLIT)
    return Row(variant, trainer.step, last.images_per_second if last else 0.0, metrics, sampling_seconds)


def format_row(row: Row, floor: float) -> str:
    m = row.metrics
    changed = {**row.variant.config, **row.variant.model, **row.variant.sampling}
    changes = ", ".join(f"{k}={v}" for k, v in changed.items()) or "-"
    return (
        f"| {row.variant.name} | {changes} | {row.steps} | {row.images_per_second:.0f} | {m['fd']:.1f} | "
        f"{m['fd'] / floor:.2f} | {m['confident_fraction']:.2f} | {m['class_entropy']:.2f} | "
        f"{row.sampling_seconds:.1f} |"
    )


TABLE_HEAD = (
    "| variant | changed from the base | steps | images/s | FD | FD / floor | confident | entropy | sampling s |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|"
)


def merge_section(text: str, new_rows: dict[str, str], preamble: str) -> str:
    """Replace (or add) the section; keep earlier rows of variants not rerun, in VARIANTS order."""
    start = text.find(SECTION)
    old_rows: dict[str, str] = {}
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        end = len(text) if end < 0 else end
        for line in text[start:end].splitlines():
            match = re.match(r"\| ([\w.\-]+) \|", line)
            if match and match.group(1) in BY_NAME:
                old_rows[match.group(1)] = line
        before, after = text[:start], text[end:]
    else:
        before, after = text.rstrip("\n") + "\n\n", ""
    rows = {**old_rows, **new_rows}
    ordered = [rows[v.name] for v in VARIANTS if v.name in rows]
    body = f"{SECTION}\n\n{preamble}\n\n{TABLE_HEAD}\n" + "\n".join(ordered) + "\n"
    return before + body + ("\n" + after.lstrip("\n") if after else "")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(BY_NAME), help="run these variants (default: all)")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training per variant (default 60)")
    parser.add_argument("--n", type=int, default=500, help="samples scored per variant (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.list:
        for variant in VARIANTS:
            print(f"{variant.name:14s} {variant.why}")
        return
    warning = busy_warning()
    threads = args.threads or available_cores()
    machine = machine_description(threads)
    floor = real_floor(args.n, seed=args.seed, split=SPLIT)
    print(f"real-vs-real FD floor at n={args.n} ({SPLIT} split): {floor:.1f}", flush=True)
    new_rows: dict[str, str] = {}
    for name in args.only or list(BY_NAME):
        row = run_variant(BY_NAME[name], args.budget, args.n, args.seed, args.threads)
        new_rows[name] = format_row(row, floor)
        print(new_rows[name], flush=True)
    if args.no_write:
        return
    d = TrainConfig(**BASE)
    own = "the digits' own 28"
    header = "\n".join(section_header(SECTION, machine, command_line(__file__, argv), warning)[1:]).strip()
    preamble = header + (
        f"\n\nEach row: the search's base recipe (preset {d.preset!r}, objective {d.objective!r}, "
        f"schedule {d.schedule!r}, image size {d.image_size or own}, batch {d.batch_size}, "
        f"lr {d.lr:g} with {d.warmup_steps} warm-up steps then cosine decay to {d.min_lr_ratio:g} lr "
        f"over the budget, EMA {d.ema_decay}, precision {d.precision!r}) with the listed changes, "
        f"trained for {args.budget:g} s on the 4,000 mnist5k training digits, then {args.n} samples, "
        f'DDIM-{DDIM_STEPS} from the EMA weights, scored against the "{SPLIT}" split of the held-out digits '
        f"(core.metrics.REFERENCE_SPLITS: a recipe search is tuning; real-vs-real floor at n = {args.n}: "
        f"{floor:.1f}). Rows from earlier runs of this script are kept until rerun "
        "(`python benchmarks/recipe_search.py --only NAME` reruns the row NAME); the machine and command above are "
        "the latest run's."
    )
    text = args.results.read_text() if args.results.exists() else "# Benchmark results\n"
    args.results.write_text(merge_section(text, new_rows, preamble))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
