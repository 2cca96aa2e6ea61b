"""How much of the CPU's arithmetic live training uses: the matmul peak, each network's useful GFLOP/s, and where
the time goes.

In one run, on the CPU with --threads threads (default: one per available core):

* the machine's matmul peak: `torch.matmul` of two 2048x2048 matrices in float32 and in bf16, GFLOP/s
  (2 n^3 per product), the median of a few products; "the better peak" is the larger of the two.
* for the live recipe (`core.training.Trainer` with the `TrainConfig` defaults: "tiny", the digits' own 28x28,
  x0 objective, bf16 autocast where the CPU runs it natively, batch 64) and the same recipe with each other U-Net
  preset (core.unet.PRESETS): training images/s of the Trainer's own optimizer step (`Trainer.train_step`: loss,
  backward, clipping, AdamW, EMA, the loss buckets), the training FLOPs per image (forward + backward, counted by
  torch's FlopCounterMode: convolutions and matrix products, the arithmetic the matrix units can do), the useful
  GFLOP/s (FLOPs per image x images/s) and its share of the better peak.
* a convolution table: one 3x3 convolution of C -> C channels at the recipe's 28, 14 and 7 px, forward and
  backward, in float32 and bf16, contiguous and channels_last (GFLOP/s): which shapes fill the matrix units.
* where the time goes: torch.profiler's top operators by self CPU time over a few steps of the live recipe (and
  of any model named by --profile).
* with --variants: changes to the live recipe (precision, channels_last, batch, AdamW's implementation, network
  shape, 2x2 patches, no normalisation, torch.compile; `--list` names them) against the recipe itself.

The machine may be shared, so absolute numbers are noisy and the ratios are measured A/B: in each of --rounds
rounds, every model is timed for a short window next to a window of the live recipe (the pair's order alternating
between rounds, the models' order rotated, one untimed step before each window), after a matmul peak and after
waiting (up to --quiet-wait seconds) until other processes use at most QUIET_CORES of the CPUs (/proc/stat). The
ratios reported (images/s against the live recipe's, useful GFLOP/s against the peak) are medians over rounds of
those pairs' ratios. torch.compile'd variants are compiled (and their compile time reported) before the rounds.

It prints a markdown report and writes it, with the machine description (CPU model, load average) and the command
line, to benchmarks/RESULTS.md under "## CPU efficiency (benchmarks/cpu_efficiency.py)"; a run that starts on a
busy machine (1-minute load average above half the cores), ends while other processes use more than QUIET_CORES
(/proc/stat), or whose pairs often started while other processes ran, says so in bold in that section. From the
repository root:

    python benchmarks/cpu_efficiency.py                          # peaks, presets, convs, profile (~4 min, quiet)
    python benchmarks/cpu_efficiency.py --variants all           # and every variant (~15 min, compiles included)
    python benchmarks/cpu_efficiency.py --list                   # the variants and what each changes
    python benchmarks/cpu_efficiency.py --quick --presets tiny --variants fp32 --no-write   # smoke test, seconds
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import (
    RESULTS_PATH,
    busy_warning,
    command_line,
    machine_description,
    replace_model,
    section_header,
    write_section,
)
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from core.accelerators import SpeedChoices
from core.data import ImageDataset
from core.device import available_cores
from core.diffusion import training_loss
from core.training import TrainConfig, Trainer, load_training_data, make_denoiser
from core.unet import PRESETS

SECTION_HEADING = "## CPU efficiency (benchmarks/cpu_efficiency.py)"
REFERENCE = "live"  # the row every ratio divides by: the live recipe as the Train tab runs it
PROFILE_ROWS = 10
PEAKS = (("float32", torch.float32), ("bf16", torch.bfloat16))
PEAK_DTYPES = tuple(dtype for _, dtype in PEAKS)
QUIET_CORES = 0.2  # other processes' CPU use (in cores) below which the machine counts as quiet for a timed pair
CONV_SIZES = (28, 14, 7)  # the live recipe's resolutions
CONV_KINDS = {  # (bf16 autocast, channels_last) of the convolution table's columns
    "float32": (False, False),
    "float32 channels_last": (False, True),
    "bf16": (True, False),
    "bf16 channels_last": (True, True),
}


@dataclass(frozen=True)
class Variant:
    """The live recipe with some changes: TrainConfig fields, U-Net constructor arguments (over the config's
    preset), memory format, torch.compile, and the normalisation layers."""

    name: str
    why: str
    config: dict = field(default_factory=dict)  # TrainConfig fields that differ from the defaults
    model: dict = field(default_factory=dict)  # make_unet arguments over the preset's
    channels_last: bool = False
    compile: bool = False
    # "group": the U-Net's GroupNorm; "contiguous": GroupNorm on a contiguous copy, its output back in the input's
    # memory format (CPU GroupNorm is slow on channels_last); "none": removed (what normalisation costs at most)
    norm: str = "group"
    adamw: dict = field(default_factory=dict)  # AdamW options over the Trainer's ({"fused": True})

    def changes(self) -> str:
        parts = [f"{k}={v}" for k, v in {**self.config, **self.model}.items()]
        parts += [f"AdamW {k}={v}" for k, v in self.adamw.items()]
        parts += ["channels_last"] * self.channels_last + ["torch.compile"] * self.compile
        parts += [{"group": "", "none": "no GroupNorm", "contiguous": "GroupNorm on contiguous copies"}[self.norm]]
        parts = [part for part in parts if part]
        return ", ".join(parts) or "-"


OLD_TINY = {"preset": "tiny-3-level"}  # the shape variants below change the live network before 2026-12-03
LIVE = Variant(REFERENCE, "the live recipe: TrainConfig's defaults, as the Train tab and the CLI train")
PRESET_ROWS = {name: Variant(name, f'the live recipe with preset "{name}"', {"preset": name}) for name in PRESETS}
PRESET_ROWS["tiny"] = LIVE
VARIANTS: tuple[Variant, ...] = (
    Variant("fp32", "float32 instead of bf16 autocast", {"precision": "fp32"}),
    Variant(
        "fp32-tiny-3-level",
        "float32, the 3-level tiny: the choice where bf16 is slow",
        {**OLD_TINY, "precision": "fp32"},
    ),
    Variant("channels_last", "bf16 with channels_last weights and activations", channels_last=True),
    Variant("fp32-channels_last", "float32 with channels_last", {"precision": "fp32"}, channels_last=True),
    Variant(
        "channels_last-contiguous-norm",
        "bf16, channels_last, GroupNorm on contiguous copies",
        channels_last=True,
        norm="contiguous",
    ),
    Variant(
        "channels_last-no-norm", "bf16, channels_last, no GroupNorm (a cost ceiling)", channels_last=True, norm="none"
    ),
    Variant("batch128", "batch 128", {"batch_size": 128}),
    Variant("batch256", "batch 256", {"batch_size": 256}),
    Variant("no-norm", "GroupNorm layers removed (a cost ceiling, not a network to train)", norm="none"),
    Variant("2-levels", "two levels: 16, 32 channels at 28, 14 px", OLD_TINY, model={"channel_mults": (1, 2)}),
    Variant("w16-124", "16, 32, 64 channels", OLD_TINY, model={"channel_mults": (1, 2, 4)}),
    Variant(
        "w16-148",
        "16, 64, 128 channels: the width at the low resolutions",
        OLD_TINY,
        model={"channel_mults": (1, 4, 8)},
    ),
    Variant("w32", "32, 64, 64 channels (twice tiny's width)", OLD_TINY, model={"base_channels": 32}),
    Variant("w32-2lv", "two levels: 32, 64 channels", OLD_TINY, model={"base_channels": 32, "channel_mults": (1, 2)}),
    Variant("w32-124", "32, 64, 128 channels", OLD_TINY, model={"base_channels": 32, "channel_mults": (1, 2, 4)}),
    Variant("w64-2lv", "two levels: 64, 128 channels", OLD_TINY, model={"base_channels": 64, "channel_mults": (1, 2)}),
    Variant(
        "w32-cl-b128",
        "32, 64, 64 channels, channels_last, batch 128",
        {**OLD_TINY, "batch_size": 128},
        {"base_channels": 32},
        channels_last=True,
    ),
    Variant("fused-adamw", "AdamW's fused CPU kernel instead of its per-parameter loop", adamw={"fused": True}),
    Variant("foreach-adamw", "AdamW's foreach (multi-tensor) path", adamw={"foreach": True}),
    Variant(
        "p2-w32-2lv",
        "2x2 patches: 4 channels at 14x14; 32, 64 channels",
        model={"base_channels": 32, "channel_mults": (1, 2), "patch_size": 2},
    ),
    Variant(
        "p2-w64-2lv",
        "2x2 patches: 4 channels at 14x14; 64, 128 channels",
        model={"base_channels": 64, "channel_mults": (1, 2), "patch_size": 2},
    ),
    Variant(
        "p2-w64-1lv",
        "2x2 patches: 4 channels at 14x14; 64 channels, one level",
        model={"base_channels": 64, "channel_mults": (1,), "patch_size": 2},
    ),
    Variant("compile", "torch.compile (inductor) of the live recipe's network", compile=True),
    Variant("w32-compile", "32, 64, 64 channels, torch.compile", OLD_TINY, model={"base_channels": 32}, compile=True),
    Variant(
        "channels_last-compile",
        "bf16, channels_last, torch.compile (inductor writes its own GroupNorm kernels)",
        channels_last=True,
        compile=True,
    ),
    Variant(
        "p2-w64-1lv-compile",
        "2x2 patches, 64 channels, one level, torch.compile",
        model={"base_channels": 64, "channel_mults": (1,), "patch_size": 2},
        compile=True,
    ),
)
BY_NAME = {variant.name: variant for variant in VARIANTS}


@dataclass
class Row:
    """One timed model: its trainer, FLOPs and measured rates (one per round)."""

    variant: Variant
    trainer: Trainer
    params: int
    flops_per_image: float  # forward + backward, counted
    compile_seconds: float | None = None  # the first (compiling) step, for torch.compile'd variants
    rates: list[float] = field(default_factory=list)  # images/s per round
    reference_rates: list[float] = field(default_factory=list)  # the live recipe's, in the window next to each
    peaks: list[float] = field(default_factory=list)  # the better matmul peak, measured just before each pair
    others: list[float] = field(default_factory=list)  # other processes' CPU use (cores) just before each pair
    step_seconds: list[float] = field(default_factory=list)  # every timed step

    @property
    def batch(self) -> int:
        return self.trainer.config.batch_size


# ------------------------------------------------------------------------------------------------ measuring


def matmul_gflops(dtype: torch.dtype, size: int, repeats: int) -> float:
    """GFLOP/s of torch.matmul on two size x size matrices of `dtype`: the median of `repeats` products after two
    untimed ones."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    times = [0.0] * repeats
    for i in range(-2, repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        if i >= 0:
            times[i] = time.perf_counter() - start
    return 2 * size**3 / statistics.median(times) / 1e9


def build(variant: Variant, data: ImageDataset) -> Row:
    """A Trainer of the live recipe with the variant's changes, and its counted FLOPs per training image."""
    config = TrainConfig(**variant.config)
    trainer = Trainer(config, dataset=data)
    speed = SpeedChoices(bf16=trainer.bf16, channels_last=variant.channels_last, compile=variant.compile)
    model = None
    if variant.model or variant.norm != "group":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = make_denoiser(trainer.config, data, **variant.model)
        if variant.norm != "group":
            replace_norms(model, variant.norm)
    replace_model(trainer, model, speed)
    if variant.adamw:
        options = trainer.optimizer.defaults
        trainer.optimizer = torch.optim.AdamW(
            trainer.model.parameters(),
            lr=config.lr,
            betas=options["betas"],
            weight_decay=options["weight_decay"],
            **variant.adamw,
        )
    row = Row(variant, trainer, sum(p.numel() for p in trainer.model.parameters()), training_flops(trainer))
    if variant.compile:
        start = time.perf_counter()
        trainer.train_step(config.lr)
        row.compile_seconds = time.perf_counter() - start
    return row


class ContiguousGroupNorm(nn.GroupNorm):
    """GroupNorm computed on a contiguous (NCHW) copy of its input, the result given back in the input's memory
    format: what channels_last costs without CPU GroupNorm's slow channels_last kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return super().forward(x.contiguous()).contiguous(memory_format=layout)


def replace_norms(model: nn.Module, norm: str) -> None:
    """Replace every GroupNorm in the model (in place): by an identity ("none") or a ContiguousGroupNorm with the
    same groups and weights ("contiguous")."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if not isinstance(child, nn.GroupNorm):
                continue
            if norm == "none":
                setattr(module, name, nn.Identity())
            else:
                replacement = ContiguousGroupNorm(child.num_groups, child.num_channels, child.eps)
                replacement.load_state_dict(child.state_dict())
                setattr(module, name, replacement)


def training_flops(trainer: Trainer, images: int = 2) -> float:
    """Forward + backward FLOPs per image of the trainer's loss (its eager model, so that compiled networks count
    the same arithmetic), counted by FlopCounterMode on a few images of its data."""
    model, config = trainer.model, trainer.config
    x0 = trainer.train_tensor[:images]
    generator = torch.Generator().manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.bf16):
            loss = training_loss(model, trainer.schedule, x0, objective=config.objective, generator=generator).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / images


def time_window(row: Row, seconds: float, min_steps: int) -> float:
    """One untimed step, then steps for `seconds` (at least min_steps); images/s over the timed ones."""
    lr = row.trainer.config.lr
    row.trainer.train_step(lr)
    times: list[float] = []
    while len(times) < min_steps or sum(times) < seconds:
        start = time.perf_counter()
        row.trainer.train_step(lr)
        times.append(time.perf_counter() - start)
    row.step_seconds += times
    return len(times) * row.batch / sum(times)


def conv_gflops(width: int, size: int, batch: int, kind: str, seconds: float) -> float:
    """GFLOP/s of one 3x3 convolution, width -> width channels on batch x width x size x size, forward and backward
    (input and weight gradients: 3x the forward's 2 B H W C^2 9 FLOPs), in one of CONV_KINDS; timed for `seconds`
    after one untimed call."""
    bf16, channels_last = CONV_KINDS[kind]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    conv = nn.Conv2d(width, width, 3, padding=1).to(memory_format=layout)
    x = torch.randn(batch, width, size, size).to(memory_format=layout).requires_grad_()

    def call() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = conv(x)
        out.float().sum().backward()

    call()
    times: list[float] = []
    while len(times) < 2 or sum(times) < seconds:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 3 * 2 * batch * size * size * width * width * 9 / statistics.median(times) / 1e9


def conv_table(args: argparse.Namespace) -> list[tuple[int, int, dict[str, float]]]:
    """conv_gflops for each of args.conv_widths at each of CONV_SIZES, every kind, batch 64: the median over
    args.rounds rounds (the kinds alternate within a round), after waiting for a quiet machine (--quiet-wait).
    Rows (width, size, {kind: GFLOP/s})."""
    batch = TrainConfig().batch_size
    rows = []
    for width in args.conv_widths:
        for size in CONV_SIZES:
            if args.quiet_wait > 0:
                wait_for_quiet(args.quiet_wait)
            rates: dict[str, list[float]] = {kind: [] for kind in CONV_KINDS}
            for _ in range(args.rounds):
                for kind in CONV_KINDS:
                    rates[kind].append(conv_gflops(width, size, batch, kind, args.window / 8))
            rows.append((width, size, {kind: statistics.median(r) for kind, r in rates.items()}))
    return rows


def better_peak(args: argparse.Namespace) -> float:
    """The better of the float32 and bf16 matmul peaks, GFLOP/s."""
    return max(matmul_gflops(dtype, args.peak_size, args.peak_repeats) for dtype in PEAK_DTYPES)


def others_cpu(seconds: float = 0.25) -> float | None:
    """Cores' worth of CPU time the machine spent busy over `seconds` while this process slept: other processes'
    load (from /proc/stat; None where there is none)."""

    def busy_and_total() -> tuple[int, int]:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # all but idle and iowait; all

    try:
        busy0, total0 = busy_and_total()
        time.sleep(seconds)
        busy1, total1 = busy_and_total()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)


def wait_for_quiet(max_wait: float) -> float | None:
    """Wait (up to max_wait seconds) until other processes use at most QUIET_CORES; their use when it stopped."""
    time.sleep(0.3)  # our own OpenMP threads spin for a while after their last work
    deadline = time.perf_counter() + max_wait
    while True:
        busy = others_cpu()
        if busy is None or busy <= QUIET_CORES or time.perf_counter() >= deadline:
            return busy
        time.sleep(1.0)


def run_rounds(rows: Sequence[Row], args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """Each round, for every row (in an order rotated by one each round): a wait for a quiet machine (--quiet-wait),
    the better matmul peak, then a window of the live recipe (rows[0]) and one of the row, the pair's order
    alternating between rounds; each row collects its rate, the live recipe's next to it, the peak just before
    and the other processes' CPU use before the pair."""
    reference = rows[0]
    for r in range(args.rounds):
        for row in [*rows[r % len(rows) :], *rows[: r % len(rows)]]:
            others = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
            row.others.append(math.nan if others is None else others)
            row.peaks.append(better_peak(args))
            if row is reference:
                row.rates.append(time_window(row, args.window, args.min_steps))
                row.reference_rates.append(row.rates[-1])
                continue
            first, second = (reference, row) if r % 2 == 0 else (row, reference)
            rates = {id(first): time_window(first, args.window, args.min_steps)}
            rates[id(second)] = time_window(second, args.window, args.min_steps)
            row.rates.append(rates[id(row)])
            row.reference_rates.append(rates[id(reference)])
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
        log(
            f"round {r + 1}/{args.rounds} (load {load:.2f}): "
            + ", ".join(f"{row.variant.name} {row.rates[-1] / row.reference_rates[-1]:.2f}x" for row in rows)
        )


def top_operators(trainer: Trainer, steps: int) -> tuple[list[tuple[str, float, float, float]], float]:
    """torch.profiler over `steps` training steps (after one untimed): the PROFILE_ROWS operators with the most
    self CPU time as (name, self ms per step, share of all self time, calls per step), and all self ms per step."""
    trainer.train_step(trainer.config.lr)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            trainer.train_step(trainer.config.lr)
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)  # microseconds
    top = [
        (e.key, e.self_cpu_time_total / 1e3 / steps, e.self_cpu_time_total / total, e.count / steps)
        for e in events[:PROFILE_ROWS]
    ]
    return top, total / 1e3 / steps


# ------------------------------------------------------------------------------------------------- report


def median_ratio(values: Sequence[float], by: Sequence[float]) -> float:
    return statistics.median(a / b for a, b in zip(values, by, strict=True))


def busy_pairs(rows: Sequence[Row]) -> tuple[int, int]:
    """(timed pairs that started while other processes used more than QUIET_CORES, pairs whose start was checked)."""
    checked = [others for row in rows for others in row.others if not math.isnan(others)]
    return sum(others > QUIET_CORES for others in checked), len(checked)


def quiet_note(rows: Sequence[Row], args: argparse.Namespace) -> str:
    busy, checked = busy_pairs(rows)
    if not checked:
        return "Other processes' CPU use was not checked before the pairs."
    return (
        f"Before each pair the script waited up to {args.quiet_wait:g} s for other processes to use at most "
        f"{QUIET_CORES} cores: {busy} of {checked} pairs started with more."
    )


def report(
    rows: Sequence[Row],
    peaks: dict[str, float],
    profiles: dict[str, tuple[list[tuple[str, float, float, float]], float]],
    convs: Sequence[tuple[int, int, dict[str, float]]],
    args: argparse.Namespace,
    header: list[str],
) -> str:
    reference = next(row for row in rows if row.variant is LIVE)
    better = max(peaks, key=peaks.get)
    lines = [
        *header,
        f"Matmul peak, torch.matmul {args.peak_size}x{args.peak_size}, {args.threads} threads, median of "
        f"{args.peak_repeats}: float32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
        f"(bf16 / float32 {peaks['bf16'] / peaks['float32']:.2f}x); the better of the two ({better}) measured "
        f"again before every timed pair: median {statistics.median(p for row in rows for p in row.peaks):.0f} GFLOP/s.",
        "",
        f"Training: `Trainer.train_step` of the live recipe (TrainConfig defaults: preset 'tiny', the digits' own "
        f"28x28, x0 objective, batch {TrainConfig().batch_size}, precision 'auto' = bf16 autocast here: "
        f"{reference.trainer.bf16}) with the changes listed. {args.rounds} rounds; in each, every model is timed for "
        f"{args.window:g} s next to a {args.window:g} s window of the live recipe (A/B, the order alternating "
        "between rounds, one untimed step before each window), after a matmul peak. GFLOP/image: forward + "
        "backward, counted by FlopCounterMode (convolutions and matrix products). Useful GFLOP/s = GFLOP/image x "
        "images/s; % of peak = useful GFLOP/s / the peak measured just before; 'vs live' = the median over rounds "
        "of the ratio to the live recipe's window next to it (images/s; GFLOP/s: that x the FLOPs ratio). "
        + quiet_note(rows, args),
        "",
        "| model | changed from the live recipe | params | train GFLOP/image | images/s | ms/step | useful GFLOP/s "
        "| % of peak | images/s vs live | GFLOP/s vs live |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        gflop = row.flops_per_image / 1e9
        useful = [gflop * rate for rate in row.rates]
        compiled = f" (compiling: {row.compile_seconds:.0f} s)" if row.compile_seconds is not None else ""
        rate_ratio = median_ratio(row.rates, row.reference_rates)
        cells = [
            row.variant.name,
            row.variant.changes() + compiled,
            f"{row.params:,}",
            f"{gflop:.3f}",
            f"{statistics.median(row.rates):.0f}",
            f"{statistics.median(row.step_seconds) * 1e3:.1f}",
            f"{statistics.median(useful):.0f}",
            f"{100 * median_ratio(useful, row.peaks):.1f}%",
            f"{rate_ratio:.2f}x",
            f"{rate_ratio * row.flops_per_image / reference.flops_per_image:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if convs:
        peak = statistics.median(p for row in rows for p in row.peaks)
        lines += [
            "",
            f"One 3x3 convolution, C -> C channels on a batch of {TrainConfig().batch_size} at each of the live "
            "recipe's resolutions, forward + backward (3x the forward FLOPs): GFLOP/s (% of the better matmul peak, "
            f"{peak:.0f}), the median of {args.rounds} rounds in which the four kinds alternate.",
            "",
            "| C | size | " + " | ".join(CONV_KINDS) + " |",
            "|---:|---:|" + "---:|" * len(CONV_KINDS),
            *(
                f"| {width} | {size} | "
                + " | ".join(f"{rates[kind]:.0f} ({100 * rates[kind] / peak:.0f}%)" for kind in CONV_KINDS)
                + " |"
                for width, size, rates in convs
            ),
        ]
    for name, (top, total) in profiles.items():
        lines += [
            "",
            f"Where {'the live recipe' if name == REFERENCE else name}'s time goes: torch.profiler over "
            f"{args.profile_steps} steps, the top {len(top)} operators by self CPU time ({total:.1f} ms of self time "
            "per step in all; the threads' work inside one operator counts once).",
            "",
            "| operator | self ms/step | share | calls/step |",
            "|---|---:|---:|---:|",
            *(f"| {op} | {ms:.2f} | {100 * share:.1f}% | {calls:g} |" for op, ms, share, calls in top),
        ]
    variants = [row for row in rows if row.variant.name not in PRESET_ROWS and row.variant is not LIVE]
    if variants:
        lines += ["", "Variants:", "", *(f"- {row.variant.name}: {row.variant.why}" for row in variants)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=list(PRESETS), help="presets to time")
    parser.add_argument(
        "--variants", nargs="*", default=[], metavar="NAME", help="variants to time too ('all': every one; --list)"
    )
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--window", type=float, default=2.0, help="seconds of timed steps per model per round")
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps per window at least (default 3)")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak (default 2048)")
    parser.add_argument("--peak-repeats", type=int, default=5, help="timed products per peak (default 5)")
    parser.add_argument("--profile-steps", type=int, default=10, help="profiled steps per profiled model")
    parser.add_argument(
        "--profile", nargs="+", default=[REFERENCE], metavar="NAME", help="the models to profile (default: live)"
    )
    parser.add_argument(
        "--conv-widths",
        nargs="*",
        type=int,
        default=[16, 32, 64, 128],
        metavar="C",
        help="channel counts of the convolution table (default 16 32 64 128; none: no table)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help=f"seconds to wait at most, before each timed pair, for other processes to use <= {QUIET_CORES} cores "
        "(default 30; 0: no waiting)",
    )
    parser.add_argument("--threads", type=int, default=available_cores(), help="CPU threads (default: the cores)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 round of 0.2 s windows, 512x512 peak, 2 profiled steps, the first conv width only",
    )
    parser.add_argument("--no-write", action="store_true", help=f"print only; do not update {RESULTS_PATH.name}")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(
            quiet_wait=0.0, rounds=1, window=0.2, min_steps=1, peak_size=512, peak_repeats=2, profile_steps=2
        )
        args.conv_widths = args.conv_widths[:1]
    names = list(BY_NAME) if args.variants == ["all"] else args.variants
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(BY_NAME)} or 'all'")
    args.variants = list(dict.fromkeys(names))
    timed = {REFERENCE, *(PRESET_ROWS[name].name for name in args.presets), *args.variants}
    if not set(args.profile) <= timed:
        parser.error(f"--profile: only timed models can be profiled ({', '.join(sorted(timed))})")
    args.profile = list(dict.fromkeys(args.profile))
    if any(width < 1 for width in args.conv_widths):
        parser.error("--conv-widths must be >= 1")
    for name in ("rounds", "min_steps", "peak_size", "peak_repeats", "profile_steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.list:
        for variant in VARIANTS:
            print(f"{variant.name:20} {variant.changes()}: {variant.why}")
        return
    torch.set_num_threads(args.threads)
    machine = machine_description(args.threads)
    command = command_line(__file__, argv)
    start_warning = busy_warning()
    print(machine, flush=True)
    if start_warning:
        print(f"warning: {start_warning}", file=sys.stderr, flush=True)

    peaks = {name: matmul_gflops(dtype, args.peak_size, args.peak_repeats) for name, dtype in PEAKS}
    print(f"matmul peak: float32 {peaks['float32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)
    data = load_training_data(TrainConfig())
    chosen = [LIVE, *(PRESET_ROWS[name] for name in args.presets if PRESET_ROWS[name] is not LIVE)]
    chosen += [BY_NAME[name] for name in args.variants]
    rows = []
    for variant in chosen:
        rows.append(build(variant, data))
        compiled = f", compiled in {rows[-1].compile_seconds:.0f} s" if rows[-1].compile_seconds is not None else ""
        print(f"built {variant.name}: {rows[-1].flops_per_image / 1e9:.3f} GFLOP/image{compiled}", flush=True)
    run_rounds(rows, args, lambda line: print(line, flush=True))
    convs = conv_table(args)
    by_name = {row.variant.name: row for row in rows}
    profiles = {}
    for name in args.profile:
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        profiles[name] = top_operators(by_name[name].trainer, args.profile_steps)

    # the machine may have become busy during the run: other processes' use now (the 1-minute load average would
    # count this run's own threads)
    others = wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else others_cpu()
    end_warning = None
    if others is not None and others > QUIET_CORES:
        end_warning = (
            f"other processes used {others:.1f} cores when this run ended: these timings are unreliable; rerun on "
            "a quiet machine"
        )
    warning = start_warning or end_warning
    busy, checked = busy_pairs(rows)
    if not warning and busy > checked / 4:
        warning = (
            f"other processes used more than {QUIET_CORES} cores at the start of {busy} of {checked} timed pairs: "
            "these timings are unreliable; rerun on a quiet machine"
        )
    header = section_header(SECTION_HEADING, machine, command, warning)
    section = report(rows, peaks, profiles, convs, args, header)
    print()
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section)
        print(f"written to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
