"""Server-side latency of the explorer's callbacks, and the app's cold start.

For each callback it reports the median (and 90th percentile) wall time of repeated calls in this process, the
way the server runs them, with a 512x512 photo uploaded for the Forward process tab; then, in headless Chromium
against a launched server, the time from moving the t slider until every picture of the Forward tab is replaced
and loaded (what a student waits for); and the cold start: a fresh process importing and building the app, and
`python app.py` until its page answers, median of 3.

The lesson: the Lesson tab played in headless Chromium against `python app.py` as a teacher would
(benchmarks/lesson_player.py: every chapter's Show me, moving t, a live training's Start, Stop and one Step, the
default sample and its replay, the guided sample and the guidance sweep), each wait from the click to what the
class waits to see, over several plays. And a default live training (the Train tab's defaults: 60 s of "tiny" on
the bundled digits) whose preview grids at 5, 15, 30 and 60 s are saved as benchmarks/results/live_preview_<s>s.png
and whose final model is scored as the 60-s goal asks (256 samples with the default sampler, on the "report"
split: FD against the real-vs-real floor at the same n, confident fraction, digits present).

    python benchmarks/ui_latency.py            # writes its table to benchmarks/RESULTS.md
    python benchmarks/ui_latency.py --no-write --repeats 5
    python benchmarks/ui_latency.py --lesson-only --plays 1   # the lesson's waits, printed

Targets on 2 cores: forward-process update <= 50 ms, schedule figures <= 100 ms, embedding figures <= 100 ms,
cold start <= 4 s, every wait of the lesson <= 2 s (the first loss point <= 1 s), recognizable digits within
60 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import (
    busy_warning,
    command_line,
    machine_description,
    section_header,
    start_server,
    stop_server,
    time_calls,
    write_section,
)
from lesson_player import Wait, play_lesson
from PIL import Image

from core.device import available_cores
from core.imaging import save_images
from core.metrics import confident_fraction, evaluate_samples, real_floor
from core.sampler_base import draw_noise
from core.samplers import DEFAULT_GUIDANCE, sample_as_default
from explorer.tabs import embedding, forward, schedules, unet
from explorer.tabs.lesson import CHAPTERS
from explorer.tabs.train import default_training
from explorer.training_run import PREVIEW_SAMPLER, PREVIEW_STEPS, train_live

SECTION_HEADING = "## UI latency (benchmarks/ui_latency.py)"
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGETS_MS = {"forward": 50.0, "schedule": 100.0, "embedding": 100.0}
COLD_START_TARGET_S = 4.0
RESULTS_DIR = ROOT / "benchmarks" / "results"
PREVIEW_MOMENTS = (5.0, 15.0, 30.0, 60.0)
SCORE_SAMPLES = 256  # the 60-s goal's n (benchmarks/recipe_search.py)


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


def browser_lesson(repeats: int) -> list[list[Wait]]:
    """In headless Chromium against `python app.py` in its own process: the Lesson tab played `repeats` times
    (benchmarks/lesson_player.py), each time in a fresh browser context (a new user), after one untimed play that
    warms the server up as a class's first minutes would."""
    from playwright.sync_api import sync_playwright

    server, url, _ = start_server()
    plays = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            for i in range(repeats + 1):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                waits = play_lesson(context.new_page(), url)
                context.close()
                if i:
                    plays.append(waits)
                    print(" ".join(f"{w.seconds:.2f}" for w in waits), flush=True)
            browser.close()
    finally:
        stop_server(server)
    return plays


def lesson_rows(plays: list[list[Wait]]) -> list[str]:
    """One row per wait of the lesson: median and worst over the plays, the target, and whether every play met it."""
    rows = []
    for index, first in enumerate(plays[0]):
        seconds = [play[index].seconds for play in plays]
        median, worst = statistics.median(seconds), max(seconds)
        if worst <= first.target:
            verdict = "met"
        elif median <= first.target:
            verdict = f"median met; worst {worst:.2f} s"
        else:
            verdict = f"missed by {median - first.target:.2f} s"
        chapter = f"{first.chapter}. {CHAPTERS[first.chapter - 1].title}" if first.chapter else "-"
        rows.append(f"| {chapter} | {first.name} | {median:.2f} | {worst:.2f} | {first.target:g} | {verdict} |")
    return rows


def live_training(seconds: float = 60.0) -> tuple[list[str], dict]:
    """A default live training as the Train tab runs it (its controls' defaults), with preview grids saved at
    PREVIEW_MOMENTS and the final EMA model scored like the race. Returns (table rows, scores)."""
    config = default_training("seconds", seconds)
    moments = list(PREVIEW_MOMENTS)
    rows = []
    final = None
    for update in train_live(config):
        final = update
        elapsed = update.history.last.elapsed if update.history.last else 0.0
        while moments and (elapsed >= moments[0] or update.done) and update.preview_samples is not None:
            moment = moments.pop(0)
            path = RESULTS_DIR / f"live_preview_{moment:g}s.png"
            save_images(update.preview_samples, path)
            rows.append(
                f"| {moment:g} s (preview from step {update.preview_step:,}, at {elapsed:.1f} s) | "
                f"{confident_fraction(update.preview_samples):.0%} | `{path.relative_to(ROOT)}` |"
            )
    trainer = final.trainer
    chosen = trainer.config.sampling_defaults()  # what the checkpoint records and Sample starts from
    sampler = chosen.sampler_for(trainer.schedule, trainer.config.objective)
    generator = torch.Generator().manual_seed(0)
    x_T = draw_noise((SCORE_SAMPLES, *trainer.train_tensor.shape[1:]), generator, trainer.device, torch.float32)
    with torch.no_grad():
        samples = sample_as_default(trainer.ema_model, sampler, x_T, chosen.steps, generator=generator)
    scores = evaluate_samples(samples)
    labels = f", each class in turn, guidance {DEFAULT_GUIDANCE:g}" if trainer.config.class_conditional else ""
    scores.update(
        floor=real_floor(SCORE_SAMPLES),
        steps=trainer.step,
        images_per_second=final.history.last.images_per_second,
        sampler=f"{chosen.sampler}, {chosen.steps} steps, {chosen.spacing}{labels}",
        conditional=trainer.config.class_conditional,
    )
    return rows, scores


PREVIEW_LABELS = "; the class-conditional model draws each class in turn, without guidance"


def cold_start_seconds(runs: int = 3) -> list[tuple[float, float]]:
    """(seconds until `python app.py` answers HTTP on its port, seconds of `import app` inside a fresh process)."""
    code = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"
    results = []
    for _ in range(runs):
        inside = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        server, _, seconds = start_server()
        stop_server(server)
        results.append((seconds, float(inside.stdout.strip().splitlines()[-1])))
    return results


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return "-"
    return "met" if value <= target else f"missed by {value - target:.0f} ms ({value / target:.1f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per callback (after 2 warm-up calls)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    parser.add_argument("--plays", type=int, default=3, help="timed plays of the lesson (after one untimed)")
    parser.add_argument("--lesson-only", action="store_true", help="only play the lesson and print its table")
    args = parser.parse_args()
    torch.set_num_threads(available_cores())
    warning = busy_warning()
    if args.lesson_only:
        print("\n".join(lesson_rows(browser_lesson(args.plays))))
        return
    # first, while this process has computed nothing: the live training, as the app's compute thread runs it
    rows, scores = live_training()
    machine = machine_description(torch.get_num_threads())
    lines = section_header(SECTION_HEADING, machine, command_line(__file__), warning)
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
    plays = browser_lesson(args.plays)
    lines += [
        "",
        f"The Lesson tab played in Chromium as a teacher would, {len(plays)} times (each in a new browser context, "
        "after one untimed play): every wait from the click to what the class waits to see "
        "(benchmarks/lesson_player.py).",
        "",
        "| chapter | the teacher's action: what appears | median s | worst s | target s | verdict |",
        "|---|---|---|---|---|---|",
        *lesson_rows(plays),
    ]
    print("\n".join(lines[-len(plays[0]) - 2 :]), flush=True)
    lines += [
        "",
        "A default live training (60 s, the Train tab's defaults), its preview (16 digits from one fixed noise, "
        f"{PREVIEW_SAMPLER} with {PREVIEW_STEPS} steps on trailing timesteps"
        f"{PREVIEW_LABELS if scores['conditional'] else ''}) as the page showed it:",
        "",
        "| moment | preview digits classified with confidence >= 0.9 | grid |",
        "|---|---|---|",
        *rows,
        "",
        f"Its final EMA model ({scores['steps']:,} steps, {scores['images_per_second']:,.0f} images/s), "
        f"{SCORE_SAMPLES} samples with the default sampler ({scores['sampler']}), report split: FD "
        f"{scores['fd']:.1f} ({scores['fd'] / scores['floor']:.2f}x the real-vs-real floor {scores['floor']:.1f}), "
        f"{scores['confident_fraction']:.0%} confident, "
        f"{sum(c > 0 for c in scores['class_histogram'])} of 10 digits present, class entropy "
        f"{scores['class_entropy']:.2f} (log 10 = 2.30).",
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section)


if __name__ == "__main__":
    main()
