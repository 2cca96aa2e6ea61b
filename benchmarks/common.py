"""Shared helpers of the benchmark scripts: timing loops, the machine description, and RESULTS.md sections."""

from __future__ import annotations

import copy
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from core.accelerators import SpeedChoices
from core.device import available_cores, cpu_model
from core.training import Trainer

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
ROOT = RESULTS_PATH.parent.parent


def start_server(env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, str, float]:
    """`python app.py` in a fresh process on 127.0.0.1, as a user starts it (with `env` added to the environment):
    (process, url, seconds until its page answered)."""
    from explorer.app import free_port

    port = free_port()
    env = {**os.environ, **(env or {}), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return server, url, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
        if server.poll() is not None:
            raise RuntimeError("python app.py exited before serving")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def time_calls(fn: Callable[[], object], *, warmup: int, min_calls: int, min_seconds: float = 0.0) -> list[float]:
    """Call fn `warmup` times untimed, then until both min_calls calls and min_seconds of wall clock are done;
    return the duration of each timed call in seconds."""
    for _ in range(warmup):
        fn()
    durations: list[float] = []
    while len(durations) < min_calls or sum(durations) < min_seconds:
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return durations


def replace_model(trainer: Trainer, model: nn.Module | None = None, speed: SpeedChoices | None = None) -> None:
    """Give a built Trainer another network (a shape no preset names) and/or other speed options (bf16 autocast,
    channels_last, torch.compile), with a fresh EMA and optimizer. Everything the training step uses is replaced
    together: the model, its EMA, the optimizer over its parameters and `network`, what the loss calls (left
    pointing at the old model, the old network would train while the new one's optimizer saw no gradients)."""
    if speed is not None:
        trainer.speed, trainer.bf16 = speed, speed.bf16
    if model is not None:
        trainer.model = model.to(trainer.device)
    trainer.speed.prepare(trainer.model)
    trainer.ema_model = copy.deepcopy(trainer.model).eval().requires_grad_(False)
    trainer.optimizer = trainer._make_optimizer()
    trainer.network = trainer.speed.network(trainer.model)


def machine_description(threads: int, extra: str = "") -> str:
    """Date, CPU, cores, torch and thread count, Python, OS and the load average, in one line."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"{date}; CPU: {cpu_model()} ({available_cores()} available cores); torch {torch.__version__} "
        f"with {threads} threads; {extra + '; ' if extra else ''}Python {platform.python_version()}; "
        f"{platform.system()} {platform.release()}; load average at start: {load}"
    )


def busy_warning() -> str | None:
    """A warning when other processes already keep the CPUs busy (1-minute load average above half the cores),
    since wall-clock timings then measure the contention more than the code."""
    if not hasattr(os, "getloadavg"):
        return None
    load, cores = os.getloadavg()[0], available_cores()
    if load <= cores / 2:
        return None
    return (
        f"the machine was busy when this run started (load average {load:.2f} on {cores} cores): these "
        "timings are unreliable; rerun on a quiet machine"
    )


def write_section(heading: str, section: str, path: Path = RESULTS_PATH) -> None:
    """Replace the section (from `heading` to the next "## " heading) in path, or append it; create the file
    with a "# Benchmark results" heading if it is missing. `section` starts with the heading line."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        before, after = text.rstrip("\n") + "\n\n", ""
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        before, after = "".join(lines[:start]), "".join(lines[end:])
    path.write_text(before + section + ("\n" + after if after else ""))


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran a benchmark, as typed at the repository root (`python benchmarks/NAME.py ARGS`, from
    whatever folder it ran): `script` is the benchmark's __file__, `argv` the arguments its main() was given (None:
    the process's own)."""
    path = Path(script).resolve()
    shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    return shlex.join(["python", shown, *(sys.argv[1:] if argv is None else argv)])


def section_header(heading: str, machine: str, command: str, warning: str | None = None) -> list[str]:
    """The lines every RESULTS.md section opens with: heading, machine, busy warning (if any), command."""
    return [
        heading,
        "",
        f"Machine: {machine}.",
        "",
        *([f"**Warning: {warning}.**", ""] if warning else []),
        f"Command: `{command}`",
        "",
    ]
