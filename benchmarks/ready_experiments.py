"""The four ready-made experiments of a lesson (core.experiment.READY_EXPERIMENTS), run on this machine: what each
shows after the same short training per run (equal optimizer steps).

Every run trains the TrainConfig defaults (the live recipe: tiny U-Net, x0, cosine, the digits at 28x28, batch 64)
with the experiment's change for --steps optimizer steps, then draws --n samples from one fixed x_T with the sampler
settings its checkpoint records and is scored by core.metrics.score_samples on the report split. Writes, per
experiment, a table (steps, wall time, FD and its floor, precision, recall, confident fraction, the plain reading)
and its figure (benchmarks/results/ready_<name>.png: loss curves overlaid, sample grids) into benchmarks/RESULTS.md.
The runs' folders go to a temporary directory.

    python benchmarks/ready_experiments.py                    # about 6 minutes on 2 cores
    python benchmarks/ready_experiments.py --steps 20 --n 64 --no-write
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from common import RESULTS_PATH, busy_warning, command_line, machine_description, section_header, write_section

from core.device import available_cores
from core.experiment import FIGURE_FILE, READY_EXPERIMENTS, READY_STEPS, run_experiment

SECTION_HEADING = "## Ready-made experiments (benchmarks/ready_experiments.py)"
PICTURES = Path(__file__).resolve().parent / "results"


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def table(report: dict) -> list[str]:
    lines = [
        "| run | steps | train s | FD | floor | FD / floor | precision | recall | confident | reading |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in report["runs"]:
        m = run["metrics"]
        lines.append(
            f"| {run['label']} | {run['steps']} | {run['seconds']:.1f} | {m['fd']:.1f} | {m['fd_real_floor']:.1f} | "
            f"{m['fd'] / m['fd_real_floor']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | "
            f"{m['confident_fraction']:.3f} | {m['reading']} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=READY_STEPS, help=f"optimizer steps per run (default {READY_STEPS}, about 25 s)"
    )
    parser.add_argument("--n", type=int, default=256, help="samples per run (default 256)")
    parser.add_argument("--only", nargs="*", default=None, help="experiment titles to run (default: all four)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    machine, warning = machine_description(threads), busy_warning()
    lines = section_header(SECTION_HEADING, machine, command_line(__file__, argv), warning)
    lines += [
        f"Each run: the live recipe (TrainConfig defaults) with the experiment's change, {args.steps} optimizer "
        "steps (the same for every run, so a busy machine changes the wall time, not the result), then "
        f"{args.n} samples from one fixed x_T (seed 0) with the sampler settings its checkpoint records, scored on "
        f"the report split (FD floor: {args.n} real digits against the same reference). "
        "One run per row, one after the other, on this machine.",
        "",
    ]
    chosen = args.only or list(READY_EXPERIMENTS)
    with tempfile.TemporaryDirectory() as scratch:
        for title in chosen:
            experiment = READY_EXPERIMENTS[title]
            start = time.perf_counter()
            out = Path(scratch) / slug(title)
            report = run_experiment(experiment.runs(steps=args.steps, num_threads=threads), n=args.n, out=out)
            wall = time.perf_counter() - start
            picture = None
            if not args.no_write:
                PICTURES.mkdir(parents=True, exist_ok=True)
                picture = PICTURES / f"ready_{slug(title)}.png"
                picture.write_bytes((out / FIGURE_FILE).read_bytes())
            lines += [
                f"### {title}",
                "",
                f"What to look for: {experiment.look_for}",
                "",
                *table(report),
                "",
                f"Whole experiment, training, sampling and scoring: {wall:.0f} s."
                + (f" Figure: benchmarks/results/{picture.name}." if picture else ""),
                "",
            ]
            print("\n".join(lines[-8:]))
    section = "\n".join(lines).rstrip() + "\n"
    if args.no_write:
        print(section)
    else:
        write_section(SECTION_HEADING, section, args.results)
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
