"""Sample quality against network calls for every sampler, on the shipped models and on the 60-s race model.

For each checkpoint (default: every folder in assets/checkpoints/) `core.sampler_sweep.sweep` draws --n samples
from the fixed x_T of each seed (--seeds, default 3) with DDPM over all T timesteps (the reference) and with each of
core.sampler_sweep.SWEEP_SAMPLERS (DDIM at eta 0 and 1, Euler, Euler ancestral, Heun, DPM-Solver++(2M) and its SDE
variant) on Karras sigmas at 5, 10, 20 and 50 network calls (Heun: 3, 5, 10, 25 steps = 5, 9, 19, 49 calls), and
each of them on "trailing" timesteps at 10 calls; x_0 clipped to [-1, 1], fp32, this machine's threads.

Scoring: digits by `core.metrics.score_samples` (Fréchet distance in the digit feature network's features, the
fraction classified with confidence >= 0.9, the digits present) on both splits of the held-out digits: the default
sampler is chosen on the "tune" split (lowest mean FD at <= 10 calls) and every number in the tables is the
"report" split's. A class-conditional model is asked for the labels 0..9 in turn (guidance 1). 2D toy sets: the
sliced Wasserstein-2 distance to held-out points, with its real-vs-real floor.

Writes one RESULTS.md section per checkpoint ("## Sampler quality: NAME"), its plot (benchmarks/results/
sampler_NAME.png: quality against calls, one line per sampler, DDPM-T as a dashed reference) and the report-split
points next to the checkpoint (assets/checkpoints/NAME/sampler_quality.json, read by the Sample tab's "quality vs
network calls" chart). With --race-model it first trains the race's "ours" (TrainConfig defaults, 60 s) and
sweeps it at 10 and 50 calls, into "## Sampler quality: the 60-s race model".

    python benchmarks/sampler_quality.py                                      # every shipped model, ~40 min
    python benchmarks/sampler_quality.py --checkpoints assets/checkpoints/mnist_uncond
    python benchmarks/sampler_quality.py --race-model --checkpoints           # only the race model, ~6 min
    python benchmarks/sampler_quality.py --checkpoints assets/checkpoints/toy_moons --seeds 1 --n 100 --no-write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from common import RESULTS_PATH, busy_warning, command_line, machine_description, section_header, write_section

from core.charts import line_chart
from core.checkpoint import Checkpoint, load_checkpoint
from core.device import available_cores
from core.sampler_sweep import (
    QUALITY_FILE,
    REFERENCE,
    SWEEP_CALLS,
    SWEEP_SAMPLERS,
    SamplerChoice,
    SweepPoint,
    quality_value,
    sweep,
    write_quality,
)
from core.training import TrainConfig, Trainer

CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
RESULTS_DIR = RESULTS_PATH.parent / "results"
LEGACY_HEADING = "## Sampler quality (benchmarks/sampler_quality.py)"
DEFAULT_CALLS = 10  # the default sampler is the best at this many calls
RACE_BUDGET = 60.0  # seconds: the race model of benchmarks/time_to_quality.py
RACE_CALLS = (10, 50)


def heading(name: str) -> str:
    return f"## Sampler quality: {name} (benchmarks/sampler_quality.py)"


def full_plan(checkpoint: Checkpoint, calls: Sequence[int]) -> list[tuple[SamplerChoice, int]]:
    """DDPM-T, every sampler on Karras sigmas at each call count, every sampler on trailing timesteps at 10 calls."""
    plan = [(REFERENCE, checkpoint.schedule.num_timesteps)]
    plan += [(c, c.steps_for(n)) for c in SWEEP_SAMPLERS for n in calls]
    trailing = [SamplerChoice(c.name, c.eta, "trailing") for c in SWEEP_SAMPLERS]
    plan += [(c, c.steps_for(DEFAULT_CALLS)) for c in trailing if DEFAULT_CALLS in calls]
    return plan


def grouped(points: Sequence[SweepPoint]) -> dict[tuple[str, int], list[SweepPoint]]:
    """(label, calls) -> the points of every seed, in the order the sweep ran them."""
    groups: dict[tuple[str, int], list[SweepPoint]] = {}
    for p in points:
        groups.setdefault((p.label, p.calls), []).append(p)
    return groups


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def ratio(value: float, reference: float | None) -> str:
    return "-" if reference is None else f"{value / reference:.2f}"


def spread(values: Sequence[float]) -> str:
    return f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""


def digit_rows(groups: dict[tuple[str, int], list[SweepPoint]], reference_fd: float | None) -> list[str]:
    lines = [
        "| sampler | steps | network calls | FD (report) | FD / DDPM-T | confident | digits present (fewest) "
        "| FD (tune) | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, calls), group in groups.items():
        fds = [p.metrics["report"]["fd"] for p in group]
        confident = mean([p.metrics["report"]["confident_fraction"] for p in group])
        present = min(sum(c > 0 for c in p.metrics["report"]["class_histogram"]) for p in group)
        tune = mean([p.metrics["tune"]["fd"] for p in group])
        lines.append(
            f"| {label} | {group[0].steps} | {calls} | {mean(fds):.1f}{spread(fds)} | {ratio(mean(fds), reference_fd)} "
            f"| {confident:.2f} | {present} | {tune:.1f} | {mean([p.seconds for p in group]):.1f} |"
        )
    return lines


def point_rows(groups: dict[tuple[str, int], list[SweepPoint]]) -> list[str]:
    lines = [
        "| sampler | steps | network calls | sliced W2 | real floor | ratio | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (label, calls), group in groups.items():
        sw = mean([p.metrics["points"]["sliced_wasserstein"] for p in group])
        floor = mean([p.metrics["points"]["sw_real_floor"] for p in group])
        seconds = mean([p.seconds for p in group])
        lines.append(
            f"| {label} | {group[0].steps} | {calls} | {sw:.4f} | {floor:.4f} | {sw / floor:.2f} | {seconds:.2f} |"
        )
    return lines


def best_at(groups: dict[tuple[str, int], list[SweepPoint]], split: str, calls: int) -> tuple[str, int] | None:
    """The (label, calls) with the lowest mean quality value on `split` among those with at most `calls` calls
    (DDPM-T excluded)."""
    candidates = [k for k in groups if k[1] <= calls and not k[0].startswith(REFERENCE.name)]
    if not candidates:
        return None
    return min(candidates, key=lambda k: mean([quality_value(p.metrics[split]) for p in groups[k]]))


def report(name: str, points: Sequence[SweepPoint], args: argparse.Namespace, pictures: Path, note: str) -> list[str]:
    """The section's body: what was measured, the table, the default's verdict and the plot."""
    groups = grouped(points)
    digits = "report" in points[0].metrics
    split = "report" if digits else "points"
    reference_key = next((k for k in groups if k[0] == REFERENCE.label), None)
    reference = mean([quality_value(p.metrics[split]) for p in groups[reference_key]]) if reference_key else None
    lines = [note, ""]
    lines += digit_rows(groups, reference) if digits else point_rows(groups)
    lines.append("")
    best = best_at(groups, "tune" if digits else split, DEFAULT_CALLS)
    if best is not None and digits:
        group = groups[best]
        fd = mean([p.metrics["report"]["fd"] for p in group])
        floor = mean([p.metrics["report"]["fd_real_floor"] for p in group])
        confident = mean([p.metrics["report"]["confident_fraction"] for p in group])
        present = min(sum(c > 0 for c in p.metrics["report"]["class_histogram"]) for p in group)
        versus = f" = {fd / reference:.2f}x DDPM-T's {reference:.1f} (target <= 1.2x)," if reference else ","
        lines += [
            f"Best at <= {DEFAULT_CALLS} calls on the tune split: **{best[0]}** ({best[1]} calls). On the report "
            f"split: FD {fd:.1f}{versus} {fd / floor:.2f}x the real-vs-real floor {floor:.1f}, {confident:.0%} "
            f"confident (target >= 85%), fewest digits present over the seeds: {present} of 10.",
            "",
        ]
    series: dict[str, list[tuple[float, float]]] = {}
    for (label, calls), group in groups.items():
        if label != REFERENCE.label and label.endswith("karras"):
            series.setdefault(label, []).append((calls, mean([quality_value(p.metrics[split]) for p in group])))
    plot = line_chart(
        series,
        pictures / f"sampler_{name}.png",
        title=f"{name}: {'FD' if digits else 'sliced W2'} (log) vs network calls (log), Karras sigmas",
        x_label="network calls",
        log_x=True,
        reference=(f"DDPM-{groups[reference_key][0].steps}", reference) if reference_key else None,
    )
    return [*lines, f"![quality against network calls](results/{plot.name})", ""]


def run_checkpoint(
    directory: Path, calls: Sequence[int], args: argparse.Namespace, with_reference: bool = True
) -> tuple[Checkpoint, list[SweepPoint]]:
    checkpoint = load_checkpoint(directory)
    plan = full_plan(checkpoint, calls)
    if not with_reference:
        plan = plan[1:]
    points = []
    for point in sweep(checkpoint, plan, n=args.n, seeds=args.seeds, splits=("report", "tune")):
        points.append(point)
        value = quality_value(next(iter(point.metrics.values())))
        print(f"{directory.name} seed {point.seed}: {point.label} {point.calls} calls: {value:.4g} in "
              f"{point.seconds:.1f} s", flush=True)  # fmt: skip
    return checkpoint, points


def train_race_model(folder: Path) -> Path:
    trainer = Trainer(TrainConfig(time_budget=RACE_BUDGET, steps=None, seed=0))
    for _ in trainer.run():
        pass
    return trainer.save(folder, with_training_state=False)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="*", type=Path, default=None, help="default: assets/checkpoints/*")
    parser.add_argument("--race-model", action="store_true", help="also train and sweep the 60-s race model")
    parser.add_argument("--n", type=int, default=256, help="samples per row and seed (default 256)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1, the table gives the mean (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--pictures", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-write", action="store_true", help="print only; pictures go to a temporary folder")
    args = parser.parse_args(argv)
    if args.n < 10 or args.seeds < 1:
        parser.error("--n must be at least 10 and --seeds at least 1")
    args.seeds = list(range(args.seeds))
    if args.checkpoints is None:
        args.checkpoints = sorted(p.parent for p in CHECKPOINTS_DIR.glob("*/config.json"))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    machine, warning, command = machine_description(threads), busy_warning(), command_line(__file__, argv)
    pictures = Path(tempfile.mkdtemp(prefix="samplers_")) if args.no_write else args.pictures
    pictures.mkdir(parents=True, exist_ok=True)
    sections = []
    common_note = (
        f"Each row: the mean over seeds {', '.join(map(str, args.seeds))} of {args.n} samples from that seed's "
        "x_T (± their standard deviation), x_0 clipped to [-1, 1], the EMA weights, fp32; wall seconds for the "
        "sampling on this machine."
    )
    for directory in args.checkpoints:
        checkpoint, points = run_checkpoint(Path(directory), SWEEP_CALLS, args)
        config = checkpoint.config
        about = (
            f"{checkpoint.directory.name}: trained for {checkpoint.step} steps ({config['training'].get('preset')}, "
            f"objective {checkpoint.objective}, schedule {config['schedule'].get('name')}). {common_note}"
        )
        body = report(checkpoint.directory.name, points, args, pictures, about)
        sections.append((heading(checkpoint.directory.name), body))
        if not args.no_write:
            write_quality(points, checkpoint.directory / QUALITY_FILE)
    if args.race_model:
        with tempfile.TemporaryDirectory() as folder:
            trained = train_race_model(Path(folder) / "race")
            checkpoint, points = run_checkpoint(trained, RACE_CALLS, args, with_reference=False)
            about = (
                f'The race\'s "ours" (TrainConfig defaults, seed 0) trained for {RACE_BUDGET:g} s: {checkpoint.step} '
                f"steps. The race goal: FD within 3x of the real-vs-real floor. {common_note}"
            )
            sections.append((heading("the 60-s race model"), report("race_60s", points, args, pictures, about)))
    for title, body in sections:
        section = "\n".join([*section_header(title, machine, command, warning), *body])
        print(section)
        if not args.no_write:
            write_section(title, section, args.results)
    if not args.no_write:
        remove_legacy(args.results)
        print(f"written to {args.results}", file=sys.stderr)


def remove_legacy(path: Path) -> None:
    """Drop the one-table section this benchmark wrote before it covered every sampler (DDPM and DDIM only)."""
    lines = path.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == LEGACY_HEADING), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        path.write_text("".join(lines[:start] + lines[end:]))


if __name__ == "__main__":
    main()
