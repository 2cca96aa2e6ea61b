"""The command line's progress: tqdm's bar on a terminal, a plain line every few seconds in a log file or a pipe.

tqdm redraws its bar with carriage returns many times a second; written to a file, that is one long line that
grows by kilobytes a second (a 60-s training wrote 87 kB). `progress_bar` picks tqdm when stderr is a terminal and
`LineProgress` otherwise, which offers the same three calls (update, set_postfix, close).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LINE_SECONDS = 5.0  # how often LineProgress writes a line


def progress_bar(total: int | None, initial: int = 0, stream: TextIO | None = None) -> tqdm | LineProgress:
    """A progress display counting steps from `initial` to `total` (None: open-ended) on stream (default stderr):
    tqdm on a terminal, else a plain line every LINE_SECONDS."""
    stream = stream or sys.stderr
    if stream.isatty():
        return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=stream)
    return LineProgress(total, initial, stream, LINE_SECONDS)


def format_seconds(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class LineProgress:
    """tqdm's update / set_postfix / close, written as one line every `interval` seconds and a last one on close:
    "step 120/2000, loss=0.0812, img_s=1210, 0:12 elapsed, 3:08 left" (the time left from the rate so far, or the
    postfix's `left` where the caller gives one)."""

    def __init__(self, total: int | None, initial: int, stream: TextIO, interval: float) -> None:
        self.total, self.initial, self.n = total, initial, initial
        self.stream, self.interval = stream, interval
        self.postfix: dict[str, object] = {}
        self.start = self.last_line = time.monotonic()
        self.shown = initial  # the step of the last line written

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last_line >= self.interval:
            self.write_line()

    def set_postfix(self, refresh: bool = True, **values: object) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.n != self.shown:
            self.write_line()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write_line(self) -> None:
        now = time.monotonic()
        elapsed = now - self.start
        parts = [f"step {self.n}" + (f"/{self.total}" if self.total else "")]
        parts += [f"{key}={value}" for key, value in self.postfix.items() if key != "left"]
        parts.append(f"{format_seconds(elapsed)} elapsed")
        done = self.n - self.initial
        if "left" in self.postfix:  # the caller knows better (a time budget)
            parts.append(f"{self.postfix['left']} left")
        elif self.total and done > 0:
            parts.append(f"{format_seconds(elapsed / done * max(self.total - self.n, 0))} left")
        print(", ".join(parts), file=self.stream, flush=True)
        self.last_line, self.shown = now, self.n
