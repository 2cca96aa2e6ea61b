"""The Lesson tab played through in headless Chromium, chapter by chapter, as a teacher would
(benchmarks/lesson_player.py): every Show me opens its tab with its settings and pictures, a live training starts,
shows its first loss point and stops, one Step is shown, the digits are sampled and replayed, the guided 3s are
sampled and swept. Each step waits for its visible outcome, so the test fails if any never comes; how long each
takes is measured by benchmarks/ui_latency.py, not asserted here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from explorer.tabs.lesson import CHAPTERS

PLAYER = Path(__file__).resolve().parent.parent / "benchmarks" / "lesson_player.py"


def load_player():
    spec = importlib.util.spec_from_file_location("lesson_player", PLAYER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_the_lesson_plays_through_in_chromium(app_url, page, artifacts):
    waits = load_player().play_lesson(page, app_url)
    page.screenshot(path=str(artifacts / "lesson_played.png"))
    assert [wait.chapter for wait in waits if wait.name == "Show me"] == list(range(1, len(CHAPTERS) + 1))
    names = [wait.name for wait in waits]
    done = ("move t to 750", "Start: the first loss point", "Stop: confirmed", "Stop: the run ended and was kept")
    for step in (*done, "Step: one step shown", "replay slider to the start"):
        assert step in names
    assert names.count("Sample: the finished pictures") == 2
    assert names[-1] == "Guidance sweep: the grid"
    assert page.locator("#sample-sweep img").count() == 1
    assert "3" in page.locator("#sample-sweep-caption").inner_text()  # the sweep drew the chapter's class
    for wait in waits:
        print(f"chapter {wait.chapter}: {wait.name}: {wait.seconds:.2f} s (target {wait.target:g} s)")
