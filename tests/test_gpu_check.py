"""benchmarks/gpu_check.py on a machine without a GPU: its CPU smoke run passes every check and writes nothing, and
its DDP part launches torchrun on every GPU, reads the images/s, and says "skipped: <reason>" when it cannot."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SMOKE = [
    *("--device", "cpu", "--threads", "1", "--seconds", "0.3", "--batch-size", "8", "--presets", "tiny"),
    *("--sample-steps", "10", "--skip-peer", "--goal-budgets", "2", "--goal-n", "64", "--no-compile", "--no-write"),
]


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_check

    return gpu_check


def test_the_docstring_s_smoke_command_is_the_one_tested(gpu_check):
    assert " ".join(SMOKE) in " ".join(gpu_check.__doc__.replace("\\\n", " ").split())


@pytest.mark.slow
def test_the_cpu_smoke_run_passes_every_check_and_writes_nothing():
    speed_record = ROOT / "assets" / "speed_choices.json"
    before = speed_record.read_bytes() if speed_record.exists() else None
    results = (ROOT / "benchmarks" / "RESULTS.md").read_bytes()
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", *SMOKE], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert out.count("PASS ") == 7 and "FAIL" not in out, out
    for part in (
        "Speed options for the Train tab's default",
        "| ours-tiny | fp32 |",
        "| diffusers-tiny | bf16 |",
        "skipped: 0 GPUs here; DDP needs at least 2",
        "to reach the race's goal",
    ):
        assert part in out, part
    assert (speed_record.read_bytes() if speed_record.exists() else None) == before
    assert (ROOT / "benchmarks" / "RESULTS.md").read_bytes() == results


class Finished:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def test_ddp_runs_one_and_every_gpu_and_reads_their_speed(gpu_check, monkeypatch):
    import ddp_scaling

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    commands = []

    def run(command, **options):
        commands.append(command)
        processes = int(command[command.index("--nproc-per-node") + 1]) if "--nproc-per-node" in command else 1
        return Finished(0, f"training ...\nsaved /tmp/run at step 300, {900 * processes} images/s\n")

    monkeypatch.setattr(ddp_scaling.subprocess, "run", run)
    args = gpu_check.parse_args(["--ddp-batch", "64"])
    rows = gpu_check.ddp(torch.device("cuda"), args)
    assert rows == [["1", "64", "900", "1.00x"], ["4", "256", "3,600", "4.00x"]]
    assert "torch.distributed.run" not in commands[0] and commands[0][1:4] == ["-m", "core", "train"]
    assert commands[1][1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4"]
    assert commands[1][6:9] == ["-m", "core", "train"] and "256" in commands[1]


def test_ddp_says_why_it_was_skipped(gpu_check, monkeypatch):
    import ddp_scaling

    args = gpu_check.parse_args([])
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_check.ddp(torch.device("cuda"), args)[0][-1] == "skipped: 1 GPU here; DDP needs at least 2"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    failed = Finished(1, "Traceback ...\nValueError: batch_size 256 does not split over 3 processes\n")
    monkeypatch.setattr(ddp_scaling.subprocess, "run", lambda command, **options: failed)
    rows = gpu_check.ddp(torch.device("cuda"), args)
    assert rows[0][-1] == "skipped: the command failed (ValueError: batch_size 256 does not split over 3 processes)"
