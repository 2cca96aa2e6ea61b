"""How long keeping a finished run takes (explorer.runs.record_run: drawing RUN_SAMPLES samples of its EMA model
from the fixed x_T and scoring them), for each U-Net preset on the digits and for a 2D toy set. Issue 14 asks for
at most 3 s on 2 cores, since the page waits for it when a run ends.

Each model is trained for 2 steps first (the record's cost does not depend on how well it learned), then recorded
--repeats times in this thread; the table gives the median and the range. Writes its section into
benchmarks/RESULTS.md.

    python benchmarks/run_record_time.py             # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from common import (
    RESULTS_PATH,
    busy_warning,
    command_line,
    machine_description,
    section_header,
    time_calls,
    write_section,
)

from core.device import available_cores
from core.training import TrainConfig
from explorer.runs import RUN_POINTS, RUN_SAMPLES, RunList, record_run
from explorer.training_run import train_live

SECTION_HEADING = "## Keeping a run for the Experiments tab (benchmarks/run_record_time.py)"
MODELS = {  # label -> TrainConfig changes
    "digits, tiny": {},
    "digits, small": {"preset": "small"},
    "digits, seed": {"preset": "seed"},
    "2D moons, tiny MLP": {"dataset": "moons", "objective": "eps", "batch_size": 256},
}
LIMIT_SECONDS = 3.0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    machine, warning = machine_description(threads), busy_warning()
    lines = section_header(SECTION_HEADING, machine, command_line(__file__, argv), warning)
    lines += [
        f"record_run on a model trained for 2 steps: {RUN_SAMPLES} images ({RUN_POINTS} points for a 2D set) from "
        f"the fixed x_T, then core.metrics.score_samples; {threads} threads; {args.repeats} repeats after one "
        f"warm-up. Limit: {LIMIT_SECONDS:g} s.",
        "",
        "| model | median s | min s | max s | within the limit |",
        "|---|---:|---:|---:|---|",
    ]
    for label, changes in MODELS.items():
        *_, last = train_live(TrainConfig(steps=2, num_threads=threads, **changes), preview_interval=1e9)
        runs = RunList()
        # one warm-up call (caches, the reference features), then --repeats timed ones
        timings = time_calls(lambda: record_run(runs, last, lambda fn: fn()), warmup=1, min_calls=args.repeats)  # noqa: B023
        median = statistics.median(timings)
        lines.append(
            f"| {label} | {median:.2f} | {min(timings):.2f} | {max(timings):.2f} | "
            f"{'yes' if median <= LIMIT_SECONDS else 'no'} |"
        )
        print(lines[-1])
    section = "\n".join(lines).rstrip() + "\n"
    if args.no_write:
        print(section)
    else:
        write_section(SECTION_HEADING, section, args.results)
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
