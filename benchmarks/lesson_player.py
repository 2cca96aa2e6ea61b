"""Plays the Lesson tab's seven chapters in a Playwright page as a teacher would, and times every wait.

A wait runs from the teacher's click (or key) to what the class waits to see, polled in the page every 10 ms: the
chapter's tab open with its settings and its pictures loaded; the first loss point after Start; the run's end after
Stop; a sample's finished pictures; the guidance sweep's grid. `play_lesson` returns each wait with its target
(2 s; the first loss point 1 s). Between a chapter's opening and the next click the teacher reads the chapter
(READ_PAUSE_S), as in class. benchmarks/ui_latency.py reports them over repeats; tests/test_lesson_play.py
plays the lesson once and checks each step's outcome (timings are the benchmark's business, not the test's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

Action = Callable[[], object]

WAIT_TARGET_S = 2.0
FIRST_LOSS_TARGET_S = 1.0
TIMEOUT_MS = 120_000
LOADED_TEXT = "See every part of a denoising diffusion model move"
WATCH_TRAINING_S = 3.0  # how long the class watches the live training before the teacher presses Stop
READ_PAUSE_S = 2.0  # after a chapter opens, the teacher reads it aloud before the next click (the page settles)

# true once every visible picture has loaded (a replaced picture has a new src that must load again)
PICTURES_LOADED = "[...document.querySelectorAll('img')].filter(i => i.offsetParent).every(i => i.complete)"
SELECTED_TAB = "document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim()"
PLOTS_DRAWN = "[...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent && p.data).length"


@dataclass(frozen=True)
class Wait:
    """One timed wait of the lesson: what the teacher did, chapter, seconds, and the target it should meet."""

    chapter: int
    name: str
    seconds: float
    target: float

    @property
    def met(self) -> bool:
        return self.seconds <= self.target


def text_of(selector: str) -> str:
    return f"(document.querySelector('{selector}')?.innerText || '')"


def value_of(label: str) -> str:
    return f"(document.querySelector(\"input[aria-label='{label}']\")?.value)"


class LessonPlayer:
    """Drives one page through the lesson; `waits` collects the timed waits."""

    def __init__(self, page: Page, url: str, timeout_ms: int = TIMEOUT_MS) -> None:
        self.page, self.url, self.timeout_ms = page, url, timeout_ms
        self.waits: list[Wait] = []
        self.chapter = 0

    def timed(
        self, name: str, action: Action, until: str, target: float = WAIT_TARGET_S, since: float | None = None
    ) -> float:
        """Do `action` (a callable), then wait until the JS expression `until` is true; record the wait (from
        `since`, a perf_counter reading, when given: a second outcome of an earlier action). Returns the start."""
        start = time.perf_counter() if since is None else since
        action()
        try:
            self.page.wait_for_function(f"() => {until}", timeout=self.timeout_ms, polling=10)
        except Exception as error:  # Playwright's TimeoutError: say which step never came
            raise AssertionError(f"chapter {self.chapter}, {name}: never saw {until}") from error
        seconds = time.perf_counter() - start
        self.waits.append(Wait(self.chapter, name, seconds, target))
        return start

    def click(self, selector: str) -> Action:
        """A click on the element (dispatched in the page, so the wait starts at the click itself, not after
        Playwright has scrolled to the button and waited for the layout to settle)."""
        return lambda: self.page.locator(selector).evaluate("element => element.click()")

    def show_me(self, chapter: int, tab: str, ready: str) -> None:
        """Press the chapter's Show me (from the Lesson tab) and wait for its tab to be open and `ready`."""
        self.chapter = chapter
        self.page.get_by_role("tab", name="Lesson").click()
        self.page.locator(f"#lesson-show-{chapter}").wait_for(timeout=TIMEOUT_MS)
        until = f"{SELECTED_TAB} === '{tab}' && {ready} && {PICTURES_LOADED}"
        self.timed("Show me", self.click(f"#lesson-show-{chapter}"), until)
        time.sleep(READ_PAUSE_S)

    def set_number(self, label: str, value: str) -> Action:
        def action() -> None:
            box = self.page.locator(f"input[aria-label='{label}']")
            box.fill(value)
            box.press("Enter")

        return action

    def sample_done(self) -> str:
        """True once a new sampling run has finished and its pictures loaded (x_t's picture is a new file)."""
        before = self.page.evaluate("document.querySelector('#sample-xt img')?.src || ''")
        xt_now = "(document.querySelector('#sample-xt img')?.src || '')"
        return (
            f"{text_of('#sample-progress')}.includes('Drag the slider') && {xt_now} !== {before!r} && {PICTURES_LOADED}"
        )

    def play(self) -> list[Wait]:
        page = self.page
        start = time.perf_counter()
        page.goto(self.url)
        page.get_by_text(LOADED_TEXT).wait_for(timeout=TIMEOUT_MS)
        page.locator("#lesson-show-1").wait_for(timeout=TIMEOUT_MS)
        self.waits.append(Wait(0, "open the app (page shown)", time.perf_counter() - start, WAIT_TARGET_S))

        caption_at = "document.body.innerText.includes('at t = {t}: alpha-bar')"
        self.show_me(1, "Forward process", caption_at.format(t=500) + f" && {value_of('Schedule')} === 'linear'")
        self.timed("move t to 750", self.set_number("number input for Timestep t", "750"), caption_at.format(t=750))

        self.show_me(2, "Schedules", f"{PLOTS_DRAWN} >= 2")
        self.show_me(
            3, "Time embedding", f"{PLOTS_DRAWN} >= 2 && {value_of('number input for Embedding size d')} === '64'"
        )
        self.show_me(
            4, "U-Net", f"{value_of('Preset')} === 'tiny' && document.body.innerText.includes('the tiny preset')"
        )

        self.show_me(5, "Train", "!!document.querySelector('#train-start')")
        # a loss point drawn (the plot shows empty axes before Start; Gradio may send the values as base64 bytes)
        loss_drawn = (
            "(() => { const p = document.querySelector('#train-loss .js-plotly-plot'); const x = p && p.data"
            " && p.data[0] && p.data[0].x; return !!x && (x.bdata ? atob(x.bdata).length : x.length) > 0; })()"
        )
        self.timed("Start: the first loss point", self.click("#train-start"), loss_drawn, FIRST_LOSS_TARGET_S)
        time.sleep(WATCH_TRAINING_S)
        status = text_of("#train-status")
        start = self.timed(
            "Stop: confirmed",
            self.click("#train-stop"),
            f"{status}.startsWith('Stopping') || {status}.startsWith('Stopped')",
        )
        self.timed("Stop: the run ended and was kept", lambda: None, f"{status}.startsWith('Stopped')", since=start)
        self.timed(
            "Step: one step shown", self.click("#train-step"), f"{text_of('#train-step-text')}.includes('Step 1')"
        )

        self.show_me(6, "Sample", f"{value_of('Model')} === 'Digits (pretrained)'")
        self.timed("Sample: the finished pictures", self.click("#sample-run"), self.sample_done())
        before = page.locator("#sample-step-caption").inner_text()
        self.timed(
            "replay slider to the start",
            self.set_number("number input for Replay the run, step by step", "0"),
            f"{text_of('#sample-step-caption')} !== {before!r} && {PICTURES_LOADED}",
        )

        self.show_me(
            7, "Sample", f"{value_of('Class')} === '3' && {value_of('number input for Guidance scale')} === '4'"
        )
        self.timed("Sample: the finished pictures", self.click("#sample-run"), self.sample_done())
        sweep_done = f"{text_of('#sample-sweep-progress')}.includes('Done') && {PICTURES_LOADED}"
        self.timed("Guidance sweep: the grid", self.click("#sample-sweep-run"), sweep_done)
        return self.waits


def play_lesson(page: Page, url: str) -> list[Wait]:
    """Play the whole lesson in `page` against the app at `url`; the waits in order."""
    return LessonPlayer(page, url).play()
