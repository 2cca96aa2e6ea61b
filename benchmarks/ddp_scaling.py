"""Multi-process training: 1 process against N torchrun processes (DistributedDataParallel) on this machine.

    python benchmarks/ddp_scaling.py                       # 1 vs 2 processes; table to benchmarks/RESULTS.md
    python benchmarks/ddp_scaling.py --processes 4 --no-write

Every run is `python -m core train` as a user types it, the N-process runs under
`torchrun --standalone --nproc-per-node N`; the CPU threads are shared out equally (1 process with all of this
machine's cores, N processes with cores/N each), the global batch is the same, so the runs train the same model
(tests/test_distributed.py). Throughput is the trainer's own images/s (the global batch over training time, without
start-up), the median of --repeats runs, interleaved so that machine noise hits both sides alike; start-up is the wall
time of the whole command minus its training time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, busy_warning, command_line, machine_description, section_header, write_section

from core.device import available_cores

HEADING = "## Multi-process training (benchmarks/ddp_scaling.py)"
SPEED = re.compile(r"saved .* at step (\d+), (\d+) images/s")


def train_command(processes: int, preset: str, steps: int, batch_size: int, out: Path) -> list[str]:
    threads = max(1, available_cores() // processes)
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    return [
        *launcher,
        *("-m", "core", "train", "--dataset", "mnist5k", "--preset", preset, "--steps", str(steps)),
        *("--batch-size", str(batch_size), "--num-threads", str(threads), "--out", str(out), "--no-training-state"),
    ]


def one_run(processes: int, preset: str, steps: int, batch_size: int) -> tuple[float, float]:
    """(images/s while training, seconds of start-up) of one `core train` command."""
    with tempfile.TemporaryDirectory() as folder:
        command = train_command(processes, preset, steps, batch_size, Path(folder) / "run")
        start = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - start
    match = SPEED.search(result.stderr)
    if result.returncode != 0 or match is None:
        errors = [line for line in result.stderr.splitlines() if "rror" in line or "terminate" in line]
        raise RuntimeError(f"{' '.join(command)} failed:\n" + "\n".join(errors[:20]) + result.stderr[-1000:])
    images_per_second = float(match.group(2))
    return images_per_second, wall - steps * batch_size / images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="N, the processes to compare with 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    args = parser.parse_args()
    cores = available_cores()
    header = section_header(HEADING, machine_description(cores), command_line(__file__), busy_warning())  # at start
    cases = (("tiny", 400, 64), ("small", 40, 64))  # (preset, steps, global batch): the live recipe, the shipped size
    rows = []
    for preset, steps, batch in cases:
        speeds: dict[int, list[tuple[float, float]]] = {1: [], args.processes: []}
        for _ in range(args.repeats):
            for processes in speeds:
                speeds[processes].append(one_run(processes, preset, steps, batch))
                print(f"{preset}, {processes} process(es): {speeds[processes][-1]}", file=sys.stderr)
        alone = statistics.median(s for s, _ in speeds[1])
        many = statistics.median(s for s, _ in speeds[args.processes])
        rows.append(
            f"| {preset} | {steps} | {batch} | {alone:,.0f} | {many:,.0f} | {many / alone:.2f}x | "
            f"{statistics.median(t for _, t in speeds[1]):.1f} | "
            f"{statistics.median(t for _, t in speeds[args.processes]):.1f} |"
        )
    lines = [
        *header,
        f"`python -m core train` against `torchrun --standalone --nproc-per-node {args.processes} -m core train` with "
        f"the same global batch (each of the {args.processes} processes trains its slice with "
        f"{max(1, cores // args.processes)} thread(s); alone, {cores} threads), bf16 autocast as the machine's "
        "default chooses. "
        f"Images/s: the trainer's own count over its training time, median of {args.repeats} interleaved runs; "
        "start-up: the command's wall time minus its training time (importing torch, and for torchrun the "
        "rendezvous and the process group).",
        "",
        f"| preset | steps | global batch | 1 process, images/s | {args.processes} processes, images/s | ratio | "
        f"1 process start-up s | {args.processes} processes start-up s |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
