"""Shared helpers of the benchmark scripts: timing loops, the machine description, and RESULTS.md sections."""

from __future__ import annotations

import datetime
import math
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
from PIL import Image, ImageDraw, ImageFont

from core.device import available_cores

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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


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


CHART_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: Path,
    *,
    title: str,
    x_label: str,
    log_x: bool = False,
    reference: tuple[str, float] | None = None,
) -> Path:
    """A PNG line chart drawn with PIL (no plotting library needed): one line with dots per series, y on a log
    scale with decade grid lines, x linear from 0 or logarithmic, an optional dashed horizontal reference line."""
    width, height, left, right, top, bottom = 900, 560, 80, 230, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [y for points in series.values() for _, y in points if y > 0] + ([reference[1]] if reference else [])
    y_low = 10 ** math.floor(math.log10(min(values)))
    y_high = 10 ** math.ceil(math.log10(max(values)))
    if y_high <= y_low:
        y_high = y_low * 10
    xs = [x for points in series.values() for x, _ in points]
    if log_x:
        x_low, x_high = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
    else:
        x_low, x_high = 0.0, (max(xs) * 1.05) or 1.0

    def x_fraction(x: float) -> float:
        if log_x:
            return (math.log10(x) - math.log10(x_low)) / (math.log10(x_high) - math.log10(x_low))
        return (x - x_low) / (x_high - x_low)

    def to_xy(x: float, y: float) -> tuple[float, float]:
        fraction = (math.log10(max(y, y_low)) - math.log10(y_low)) / (math.log10(y_high) - math.log10(y_low))
        return left + x_fraction(x) * (width - left - right), height - bottom - fraction * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    decade = y_low
    while decade <= y_high * 1.001:
        for multiple in range(1, 10):
            value = decade * multiple
            if value > y_high * 1.001:
                break
            _, y = to_xy(x_low, value)
            draw.line([left, y, width - right, y], fill=(225, 225, 225) if multiple > 1 else (170, 170, 170))
            if multiple in (1, 2, 5):
                draw.text((left - 8, y), f"{value:g}", fill="black", font=font, anchor="rm")
        decade *= 10
    ticks = sorted(set(xs)) if log_x else [x_low + (x_high - x_low) * i / 5 for i in range(6)]
    for tick in ticks:
        x, _ = to_xy(tick, y_low)
        draw.line([x, height - bottom, x, height - bottom + 5], fill="black")
        draw.text((x, height - bottom + 8), f"{tick:.0f}", fill="black", font=font, anchor="mt")
    draw.text(((left + width - right) / 2, height - 20), x_label, fill="black", font=font, anchor="mm")
    draw.text((left, 15), title, fill="black", font=font, anchor="lm")
    legend_y = top + 5
    if reference:
        label, value = reference
        _, y = to_xy(x_low, value)
        for x in range(left, width - right, 12):
            draw.line([x, y, x + 6, y], fill=(100, 100, 100), width=2)
        draw.line([width - right + 15, legend_y + 6, width - right + 40, legend_y + 6], fill=(100, 100, 100), width=2)
        draw.text((width - right + 48, legend_y + 6), label, fill="black", font=font, anchor="lm")
        legend_y += 20
    for index, (label, points) in enumerate(series.items()):
        color = CHART_COLORS[index % len(CHART_COLORS)]
        xy = [to_xy(x, y) for x, y in points]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=3)
        for x, y in xy:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
        draw.line([width - right + 15, legend_y + 6, width - right + 40, legend_y + 6], fill=color, width=3)
        draw.text((width - right + 48, legend_y + 6), label, fill="black", font=font, anchor="lm")
        legend_y += 20
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
