"""The live-training recipe search: which choices make a 60-second CPU run of "tiny" draw the best digits.

Each variant is the search's base recipe (the shipped TrainConfig defaults, see BASE) with a few fields
changed (and, for model-shape variants, the "tiny" U-Net with some constructor arguments changed). It trains on
the bundled mnist5k training digits for --budget seconds of wall clock (default 60) once per seed (--seeds,
default 0 1 2), draws --n samples (default 256) from its EMA weights with the sampler a fresh checkpoint records
(core.samplers.SamplingDefaults: DPM-Solver++(2M) SDE, 10 steps, trailing timesteps; x0 clipped; x_T seeded per
seed; timed separately; a class-conditional model for each class in turn with core.samplers.DEFAULT_GUIDANCE, as
the CLI and the Sample tab draw it unless asked otherwise) and scores them with `core.metrics.evaluate_samples` on
both held-out splits: the "tune" split's FD chooses (a recipe search is tuning), the "report" split's numbers are
the ones the project reports (the 60-s goal: FD within 3x of the real-vs-real floor at the same n and seed, >= 80%
confident, all ten digits). Each row gives the medians over the seeds, and the useful arithmetic (training FLOPs per
image x images/s) that benchmarks/cpu_efficiency.py measures in detail.

Results accumulate: each run replaces the rows of the variants it ran in its section of benchmarks/RESULTS.md and
keeps the others, so rounds of a greedy search can be run one after another:

    python benchmarks/recipe_search.py --list                        # the variants and what each changes
    python benchmarks/recipe_search.py --only base p2-w32-2lv        # two variants x 3 seeds, ~8 minutes
    python benchmarks/recipe_search.py --only base --seeds 0 --n 64 --budget 5 --no-write   # a smoke run

The machine must be quiet: two runs at once on 2 cores change each other's step counts several-fold.

This is round 4 (issue 19: recognizable digits in 60 s): the labels the digits come with (a class-conditional
model, as TrainConfig now trains wherever the dataset has labels) and which noise levels the loss practises
(TrainConfig.timestep_sampling: logit-normal was the base of its first run, which chose uniform). Round 3 chose the
network on 2x2 patches (UNetConfig.patch_size) whose wider convolutions fill the bf16 matrix units; round 1 ran on a
U-Net that erased the time embedding in "tiny", round 2 on the fixed U-Net with DDIM-50 at n = 500; their tables stay
in RESULTS.md as the record of how the earlier defaults were chosen.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

import torch
from common import RESULTS_PATH, busy_warning, command_line, machine_description, replace_model, section_header
from cpu_efficiency import training_flops

from core.data import load_dataset
from core.device import available_cores
from core.metrics import evaluate_samples, real_floor
from core.sampler_base import draw_noise
from core.samplers import DEFAULT_GUIDANCE, SamplingDefaults, sample_as_default
from core.training import TrainConfig, Trainer, make_denoiser

SPLIT = "tune"  # the held-out digits for choosing (core.metrics.REFERENCE_SPLITS)
REPORT = "report"  # the held-out digits for the numbers the project reports (the targets)
SPLITS = (SPLIT, REPORT)
SECTION = "## Live-training recipe, round 4: labels, and the noise levels it practises (benchmarks/recipe_search.py)"
SAMPLE_SEED = 1234  # x_T of seed s: SAMPLE_SEED + s


@dataclass(frozen=True)
class Variant:
    name: str
    why: str
    config: dict = field(default_factory=dict)  # TrainConfig fields that differ from the defaults
    model: dict = field(default_factory=dict)  # "tiny" U-Net constructor arguments that differ
    sampling: dict = field(default_factory=dict)  # SamplingDefaults fields that differ (sampler, steps, eta, ...)
    guidance: float = DEFAULT_GUIDANCE  # a class-conditional model's guidance scale (each class in turn)


# The base every variant changes: the shipped TrainConfig defaults (round 1's base had EMA 0.995).
BASE: dict = {}
OLD_TINY = {"preset": "tiny-3-level"}  # "tiny" before round 3; rounds 1 and 2 changed this network
ROUND_3 = {"class_conditional": False, "timestep_sampling": "uniform"}  # the base of round 3
LOGIT_NORMAL = {"timestep_sampling": "logit_normal"}  # SD3's logit-normal on the timestep index
DDIM50 = {"sampler": "ddim", "steps": 50, "spacing": "leading"}
# The 2x2-patch networks (UNetConfig.patch_size): 4 channels at 14x14, so the convolutions are 2-4x wider for the
# same positions x channels and fill the bf16 matrix units better (benchmarks/RESULTS.md "CPU efficiency").
P2_W64_1LV = {"patch_size": 2, "base_channels": 64, "channel_mults": (1,)}


def p2(width: int, **changes: object) -> dict:
    """A two-level network on 2x2 patches: `width` channels at 14x14 and twice that at 7x7 (28-pixel digits)."""
    return {"patch_size": 2, "base_channels": width, "channel_mults": (1, 2), **changes}


VARIANTS: tuple[Variant, ...] = (
    Variant("base", "the base recipe"),
    Variant("repeat", "the base recipe again: the run-to-run spread"),
    Variant("round-3", "round 3's base: no labels, uniform timesteps", ROUND_3),
    # round 4's first run (commit 15be8db) had logit-normal timesteps in its base; these rows name them, so a rerun
    # on today's base (uniform timesteps, chosen by that run) measures the same thing
    Variant("unconditional", "no labels, logit-normal timesteps", {"class_conditional": False, **LOGIT_NORMAL}),
    Variant("uniform-t", "uniform timesteps with labels (the base since round 4)", {"timestep_sampling": "uniform"}),
    Variant("logit-normal", "logit-normal timesteps with labels", LOGIT_NORMAL),
    Variant("guidance1", "logit-normal timesteps; guidance 1: plain conditional sampling", LOGIT_NORMAL, guidance=1.0),
    Variant("guidance3", "logit-normal timesteps; guidance 3", LOGIT_NORMAL, guidance=3.0),
    Variant("uniform-guidance1", "guidance 1: plain conditional sampling", guidance=1.0),
    Variant("tiny-3-level", "the 3-level, 16-channel tiny of rounds 1 and 2 (the base before round 3)", OLD_TINY),
    Variant("fp32-tiny-3-level", "float32, the 3-level tiny (where bf16 is slow)", {**OLD_TINY, "precision": "fp32"}),
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
    Variant("ddim50", "DDIM-50, eta 0, leading timesteps (round 2's sampler)", sampling=DDIM50),
    Variant("eta1", "DDIM-50 with eta 1 (fresh noise at every step, like DDPM)", sampling={**DDIM50, "eta": 1.0}),
    Variant("dpm20", "DPM-Solver++(2M) SDE with 20 steps instead of 10", sampling={"steps": 20}),
    Variant("2-blocks", "two residual blocks per level", OLD_TINY, model={"num_res_blocks": 2}),
    Variant("mults124", "channel multipliers (1, 2, 4)", OLD_TINY, model={"channel_mults": (1, 2, 4)}),
    Variant("2-levels", "two levels (1, 2) instead of three", OLD_TINY, model={"channel_mults": (1, 2)}),
    Variant("base32", "32 base channels", OLD_TINY, model={"base_channels": 32}),
    Variant("mid-attention", "self-attention in the middle block", OLD_TINY, model={"mid_attention": True}),
    Variant("p2-w64-1lv", "2x2 patches; 64 channels at 14x14, one level", model=P2_W64_1LV),
    Variant("p2-w64-1lv-lr4e-3", "2x2 patches; 64 channels, one level; peak lr 4e-3", {"lr": 4e-3}, model=P2_W64_1LV),
    Variant("p2-w64-1lv-lr1e-3", "2x2 patches; 64 channels, one level; peak lr 1e-3", {"lr": 1e-3}, model=P2_W64_1LV),
    Variant("p2-w96-1lv", "2x2 patches; 96 channels, one level", model={**P2_W64_1LV, "base_channels": 96}),
    Variant("p2-w64-2lv", "2x2 patches; 64 channels at 14x14, 128 at 7x7", model=p2(64)),
    Variant("p2-w32-2lv", "2x2 patches; 32 channels at 14x14, 64 at 7x7", model=p2(32)),
    Variant("p2-w40-2lv", "2x2 patches; 40 channels at 14x14, 80 at 7x7", model=p2(40)),
    Variant("p2-w48-2lv", "2x2 patches; 48 channels at 14x14, 96 at 7x7", model=p2(48)),
    Variant("p2-w32-14", "2x2 patches; 32 channels at 14x14, 128 at 7x7", model=p2(32, channel_mults=(1, 4))),
    Variant(
        "p2-w32-mid-attention",
        "p2-w32-2lv with self-attention in the middle (49 positions)",
        model=p2(32, mid_attention=True),
    ),
    Variant("p2-w48-mid-attention", "p2-w48-2lv with self-attention in the middle", model=p2(48, mid_attention=True)),
    Variant(
        "p2-w32-attention",
        "p2-w32-2lv with self-attention at 7x7 and in the middle",
        model=p2(32, attention_levels=(1,), mid_attention=True),
    ),
    Variant("p2-w32-2-blocks", "p2-w32-2lv with two residual blocks per level", model=p2(32, num_res_blocks=2)),
    Variant("p2-w32-lr4e-3", "p2-w32-2lv at peak lr 4e-3", {"lr": 4e-3}, model=p2(32)),
    Variant("p2-w32-batch128", "p2-w32-2lv, batch 128 at peak lr 4e-3", {"batch_size": 128, "lr": 4e-3}, model=p2(32)),
    Variant(
        "p4-w128-1lv",
        "4x4 patches; 128 channels at 7x7, one level",
        model={"patch_size": 4, "base_channels": 128, "channel_mults": (1,)},
    ),
    Variant(
        "p4-w64-1lv",
        "4x4 patches; 64 channels at 7x7, one level",
        model={"patch_size": 4, "base_channels": 64, "channel_mults": (1,)},
    ),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}


@dataclass
class Run:
    """One seed of one variant: its training and its samples' scores on both held-out splits."""

    steps: int
    images_per_second: float
    gflop_per_image: float
    scores: dict[str, dict]  # split -> evaluate_samples' dict
    floors: dict[str, float]  # split -> real-vs-real FD at the same n and seed
    sampling_seconds: float

    def ratio(self, split: str) -> float:
        return self.scores[split]["fd"] / self.floors[split]

    def digits_present(self, split: str) -> int:
        return sum(count > 0 for count in self.scores[split]["class_histogram"])


def sampling_of(variant: Variant, config: TrainConfig) -> SamplingDefaults:
    """The sampler a variant's samples are drawn with: what its checkpoint would record (what the app and the CLI
    sample a fresh model with), with the variant's changes."""
    return replace(config.sampling_defaults(), **variant.sampling)


def run_variant(variant: Variant, budget: float, n: int, seed: int, threads: int | None) -> Run:
    config = TrainConfig(
        **{"time_budget": budget, "steps": None, "seed": seed, "num_threads": threads, **BASE, **variant.config}
    )
    data = load_dataset(config.dataset, split="train", image_size=config.image_size)
    trainer = Trainer(config, dataset=data)
    if variant.model:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            replace_model(trainer, make_denoiser(trainer.config, data, **variant.model))
    gflop = training_flops(trainer) / 1e9
    last = None
    for record in trainer.run():
        last = record
    chosen = sampling_of(variant, config)
    sampler = chosen.sampler_for(trainer.schedule, config.objective)
    generator = torch.Generator().manual_seed(SAMPLE_SEED + seed)
    x_T = draw_noise((n, *data.tensor.shape[1:]), generator, "cpu", torch.float32)
    start = time.perf_counter()
    with torch.no_grad():  # a class-conditional model: each class in turn, with the variant's guidance
        model = trainer.ema_model
        samples = sample_as_default(model, sampler, x_T, chosen.steps, generator=generator, guidance=variant.guidance)
    sampling_seconds = time.perf_counter() - start
    scores = {split: evaluate_samples(samples, seed=seed, split=split) for split in SPLITS}
    floors = {split: real_floor(n, seed=seed, split=split) for split in SPLITS}
    images_per_second = last.images_per_second if last else 0.0
    return Run(trainer.step, images_per_second, gflop, scores, floors, sampling_seconds)


def format_row(variant: Variant, runs: Sequence[Run]) -> str:
    """One table row: medians over the seeds (the tune split's FD of each seed too, in seed order)."""
    changed = {**variant.config, **variant.model, **variant.sampling}
    if variant.guidance != DEFAULT_GUIDANCE:
        changed["guidance"] = variant.guidance
    changes = ", ".join(f"{k}={v}" for k, v in changed.items()) or "-"
    ips = median(r.images_per_second for r in runs)
    gflop = runs[0].gflop_per_image
    tune = " / ".join(f"{r.scores[SPLIT]['fd']:.0f}" for r in runs)
    return (
        f"| {variant.name} | {changes} | {median(r.steps for r in runs):.0f} | {ips:.0f} | {gflop:.3f} | "
        f"{ips * gflop:.0f} | {tune} | **{median(r.scores[SPLIT]['fd'] for r in runs):.1f}** | "
        f"{median(r.scores[REPORT]['fd'] for r in runs):.1f} | {median(r.ratio(REPORT) for r in runs):.2f} | "
        f"{median(r.scores[REPORT]['confident_fraction'] for r in runs):.2f} | "
        f"{min(r.digits_present(REPORT) for r in runs)} | {median(r.sampling_seconds for r in runs):.1f} |"
    )


TABLE_HEAD = (
    "| variant | changed from the base | steps | images/s | train GFLOP/image | useful GFLOP/s | FD (tune) per seed "
    "| FD (tune) | FD (report) | FD (report) / floor | confident (report) | digits present (fewest) | sampling s |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
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
    parser.add_argument("--n", type=int, default=256, help="samples scored per run (default 256)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (default 0 1 2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def preamble(args: argparse.Namespace, machine: str, command: str, warning: str | None) -> str:
    d = TrainConfig(**BASE)
    chosen = d.sampling_defaults()
    own = "the digits' own 28"
    seeds = ", ".join(map(str, args.seeds))
    header = "\n".join(section_header(SECTION, machine, command, warning)[1:]).strip()
    return header + (
        f"\n\nEach row: the search's base recipe (preset {d.preset!r}, objective {d.objective!r}, "
        f"class-conditional where the dataset has labels (the digits have), timesteps {d.timestep_sampling!r}, "
        f"schedule {d.schedule!r}, image size {d.image_size or own}, batch {d.batch_size}, "
        f"lr {d.lr:g} with {d.warmup_steps} warm-up steps then cosine decay to {d.min_lr_ratio:g} lr "
        f"over the budget, EMA {d.ema_decay}, precision {d.precision!r}) with the listed changes, "
        f"trained for {args.budget:g} s on the 4,000 mnist5k training digits, once per seed ({seeds}); then "
        f"{args.n} samples from the EMA weights with the default sampler ({chosen.sampler}, {chosen.steps} steps, "
        f"{chosen.spacing} timesteps, x0 clipped; x_T seeded per seed; a class-conditional model for each class in "
        f"turn, 0, 1, 2, ..., with guidance {DEFAULT_GUIDANCE:g}), scored by core.metrics.evaluate_samples. "
        f'A recipe is chosen by the "{SPLIT}" split\'s FD (tuning); the "{REPORT}" split\'s numbers are the ones '
        "the project reports (core.metrics.REFERENCE_SPLITS). Every number is the median over the seeds; "
        "FD / floor divides each seed's FD by the real-vs-real FD at the same n and seed; digits present: the "
        "fewest of the ten classes drawn in any seed. Training GFLOP per image (forward and backward, "
        "FlopCounterMode: convolutions and matrix products) x images/s = useful GFLOP/s. Rows from earlier runs "
        "of this script are kept until rerun (`python benchmarks/recipe_search.py --only NAME` reruns the row "
        "NAME); the machine and command above are the latest run's."
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.list:
        for variant in VARIANTS:
            print(f"{variant.name:18s} {variant.why}")
        return
    warning = busy_warning()
    threads = args.threads or available_cores()
    machine = machine_description(threads)
    new_rows: dict[str, str] = {}
    for name in args.only or list(BY_NAME):
        runs = []
        for seed in args.seeds:
            run = run_variant(BY_NAME[name], args.budget, args.n, seed, args.threads)
            runs.append(run)
            print(
                f"  {name} seed {seed}: {run.steps} steps, {run.images_per_second:.0f} images/s, FD tune "
                f"{run.scores[SPLIT]['fd']:.1f}, report {run.scores[REPORT]['fd']:.1f} "
                f"({run.ratio(REPORT):.2f}x floor), {run.scores[REPORT]['confident_fraction']:.2f} confident",
                flush=True,
            )
        new_rows[name] = format_row(BY_NAME[name], runs)
        print(new_rows[name], flush=True)
    if args.no_write:
        return
    text = args.results.read_text() if args.results.exists() else "# Benchmark results\n"
    section_preamble = preamble(args, machine, command_line(__file__, argv), warning)
    args.results.write_text(merge_section(text, new_rows, section_preamble))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
