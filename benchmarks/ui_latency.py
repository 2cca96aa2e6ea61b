"""Server-side latency of the explorer's callbacks, and the app's cold start.

For each callback it reports the median (and 90th percentile) wall time of repeated calls in this process, the
way the server runs them, with a 512x512 photo uploaded for the Forward process tab; then, in headless Chromium
against a launched server, the time from moving the t slider until every picture of the Forward tab is replaced
and loaded (what a student waits for); and the cold start: a fresh process importing and building the app, and
`python app.py` until its page answers, median of 3.

    python benchmarks/ui_latency.py            # writes its table to benchmarks/RESULTS.md
    python benchmarks/ui_latency.py --no-write --repeats 5

Targets on 2 cores: forward-process update <= 50 ms, schedule figures <= 100 ms, embedding figures <= 100 ms,
cold start <= 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import busy_warning, command_line, machine_description, section_header, time_calls, write_section
from PIL import Image

from core.training import available_cores
from explorer.app import free_port
from explorer.tabs import embedding, forward, schedules, unet

SECTION_HEADING = "## UI latency (benchmarks/ui_latency.py)"
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGETS_MS = {"forward": 50.0, "schedule": 100.0, "embedding": 100.0}
COLD_START_TARGET_S = 5.0


def photo_upload(folder: Path) -> str:
    """A 512x512 photo-like JPEG (smooth colour gradients plus texture), as a user would upload."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:512, 0:512] / 511.0
    image = np.stack([x, y, 1 - x * y], axis=-1) * 200 + rng.normal(0, 20, (512, 512, 3))
    path = folder / "upload_512.jpg"
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return str(path)


def cases(upload: str) -> list[tuple[str, str, Callable[[], object]]]:
    """(name, target group, call) for every callback measured; t varies so no call repeats the last one."""
    ts = iter(np.random.default_rng(1).integers(0, 1000, 10_000).tolist())
    all_schedules = list(schedules.SCHEDULE_CHOICES)
    return [
        (
            "forward_step: 512x512 upload, move t",
            "forward",
            lambda: forward.forward_step(forward.MY_UPLOAD, upload, "linear", next(ts), 0, "cosine", False),
        ),
        (
            "forward_step: same, matching log-SNR",
            "forward",
            lambda: forward.forward_step(forward.MY_UPLOAD, upload, "cosine", next(ts), 0, "linear", True),
        ),
        (
            "forward_strip: 8 steps of the upload",
            "forward",
            lambda: forward.forward_strip(forward.MY_UPLOAD, upload, "cosine", next(ts)),
        ),
        (
            "schedule_figures: 2 schedules, T=1000",
            "schedule",
            lambda: schedules.schedule_figures(["linear", "cosine"], 1000, 1e-4, 0.02, 0.008, False),
        ),
        (
            "schedule_figures: all 8, T=4000",
            "schedule",
            lambda: schedules.schedule_figures(all_schedules, 4000, 1e-4, 0.02, 0.008, True),
        ),
        (
            "embedding_figures: d=64, T=1000",
            "embedding",
            lambda: embedding.embedding_figures(64, 1000, "8, 14, 20, 26"),
        ),
        (
            "embedding_figures: d=512, T=4000",
            "embedding",
            lambda: embedding.embedding_figures(512, 4000, "0, 1, 255, 256, 511"),
        ),
        ("unet summary: tiny at 32x32", "unet", lambda: unet_summary("tiny")),
        ("unet summary: seed at 32x32", "unet", lambda: unet_summary("seed")),
    ]


def unet_summary(preset: str) -> object:
    """The U-Net tab's summary of a preset at 32x32, forward-time measurement included."""
    return unet.describe_unet(preset, *unet.preset_controls(preset), 32, 1)


SLIDER_WAIT_JS = """
async ([label]) => {
  const visibleImages = () => [...document.querySelectorAll('img')].filter(i => i.offsetParent);
  const slider = document.querySelector(`input[type=range][aria-label="range slider for ${label}"]`);
  const before = visibleImages().map(i => i.src).join();
  const start = performance.now();
  slider.value = String((Number(slider.value) + 137) % 1000);
  slider.dispatchEvent(new Event('input', {bubbles: true}));
  slider.dispatchEvent(new Event('change', {bubbles: true}));
  while (true) {
    const images = visibleImages();
    if (images.map(i => i.src).join() !== before && images.every(i => i.complete)) break;
    await new Promise(r => setTimeout(r, 2));
  }
  return performance.now() - start;
}
"""


def browser_slider_ms(repeats: int) -> list[float]:
    """In headless Chromium: from moving the t slider to every visible picture of the Forward tab replaced and
    loaded (what a student waits for). Needs Debian's Chromium at /usr/bin/chromium."""
    from playwright.sync_api import sync_playwright

    from explorer.app import launch_locally

    demo, url = launch_locally()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.get_by_role("tab", name="Forward process").click()
            page.locator("img").filter(visible=True).first.wait_for(timeout=30_000)
            durations = [page.evaluate(SLIDER_WAIT_JS, ["Timestep t"]) for _ in range(repeats + 2)]
            browser.close()
        return durations[2:]
    finally:
        demo.close()


def cold_start_seconds(runs: int = 3) -> list[tuple[float, float]]:
    """(seconds until `python app.py` answers HTTP on its port, seconds of `import app` inside a fresh process)."""
    import os
    import urllib.request

    code = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"
    results = []
    for _ in range(runs):
        inside = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        port = free_port()
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
        start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)
                if server.poll() is not None:
                    raise RuntimeError("python app.py exited before serving")
            results.append((time.perf_counter() - start, float(inside.stdout.strip().splitlines()[-1])))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return results


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return "-"
    return "met" if value <= target else f"missed by {value - target:.0f} ms ({value / target:.1f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per callback (after 2 warm-up calls)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(available_cores())
    warning = busy_warning()
    machine = machine_description(torch.get_num_threads())
    lines = section_header(SECTION_HEADING, machine, command_line(), warning)
    lines += [
        "| callback (server side, in process) | median ms | p90 ms | target ms | verdict |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        upload = photo_upload(Path(folder))
        for name, group, call in cases(upload):
            ms = [d * 1000 for d in time_calls(call, warmup=2, min_calls=args.repeats)]
            median, p90 = statistics.median(ms), float(np.percentile(ms, 90))
            target = TARGETS_MS.get(group)
            lines.append(f"| {name} | {median:.1f} | {p90:.1f} | {target or '-'} | {verdict(median, target)} |")
            print(lines[-1], flush=True)
    trip = browser_slider_ms(args.repeats)
    lines += [
        "",
        "| in headless Chromium, against a launched server | median ms | p90 ms |",
        "|---|---|---|",
        f"| Forward tab: move t until all five pictures are replaced and loaded | {statistics.median(trip):.1f} "
        f"| {float(np.percentile(trip, 90)):.1f} |",
    ]
    print(lines[-1], flush=True)
    starts = cold_start_seconds()
    total = statistics.median(t for t, _ in starts)
    inside = statistics.median(i for _, i in starts)
    lines += [
        "",
        "| cold start (fresh process, median of 3) | seconds | target s | verdict |",
        "|---|---|---|---|",
        f"| `import app` (imports + build_app) | {inside:.2f} | {COLD_START_TARGET_S} | "
        f"{'met' if inside <= COLD_START_TARGET_S else f'missed by {inside - COLD_START_TARGET_S:.1f} s'} |",
        f"| `python app.py` until its page answers | {total:.2f} | {COLD_START_TARGET_S} | "
        f"{'met' if total <= COLD_START_TARGET_S else f'missed by {total - COLD_START_TARGET_S:.1f} s'} |",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section)


if __name__ == "__main__":
    main()
