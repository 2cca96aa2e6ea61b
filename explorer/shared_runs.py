"""Identical requests share one run: when thirty students press Sample on the same shipped model with the same
settings and seed, the server computes those pictures once and shows them to all thirty.

A `SharedRun` wraps a run's stream of frames (any iterator). Whoever follows it reads the frames; the follower
that finds no new frame advances the stream itself (one at a time, under a lock), so the run goes on as long as
anyone follows it, whoever started it, and stops when the last follower leaves (Stop, or the page went away).
A follower shows the newest frame each time it looks (it skips what it missed, never the last one).

`SharedRuns` finds the run of a key: the one in progress, or a finished one from a small cache (at most
CACHE_RUNS runs). A key of None is never shared: a user's own model, or anything else private, gets a run of its
own.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

Frame = TypeVar("Frame")
CACHE_RUNS = 16  # finished runs kept for identical requests (the default sample's run is about 0.4 MB)


class SharedRun(Generic[Frame]):
    """One run's frames, read by any number of followers (see the module docstring)."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        self._source = frames
        self.frames: list[Frame] = []
        self.finished = False  # the stream ended (complete, or it raised: `error`)
        self.error: BaseException | None = None
        self.followers = 0
        self._changed = threading.Condition()
        self._advancing = False

    def follow(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Frame]:
        """The run's frames as this follower sees them: the newest one each time, the last one always; ends early
        when stop() is true (checked between frames). Raises the run's error, if it raised one."""
        seen = -1
        while not stop():
            with self._changed:
                while len(self.frames) - 1 == seen and not self.finished and self._advancing:
                    self._changed.wait()
                if len(self.frames) - 1 > seen:
                    seen = len(self.frames) - 1
                    frame = self.frames[seen]
                elif self.finished:
                    if self.error is not None:
                        raise self.error
                    return
                else:  # nobody is advancing the run: this follower does
                    self._advancing = True
                    frame = None
            if frame is None:
                self._advance()
                continue
            yield frame

    def _advance(self) -> None:
        try:
            frame = next(self._source)
        except StopIteration:
            self._end(None)
        except BaseException as error:
            self._end(error)
        else:
            with self._changed:
                self.frames.append(frame)
                self._advancing = False
                self._changed.notify_all()

    def _end(self, error: BaseException | None) -> None:
        with self._changed:
            self.finished, self.error, self._advancing = True, error, False
            self._changed.notify_all()

    def close(self) -> None:
        """Nobody follows any more: end the stream (its `finally` blocks run) unless it ended already."""
        with self._changed:
            if self.finished:
                return
            self.finished = True
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


class SharedRuns:
    """The runs in progress by key, and the last CACHE_RUNS finished ones (see the module docstring)."""

    def __init__(self, cache_runs: int = CACHE_RUNS) -> None:
        self.cache_runs = cache_runs
        self._lock = threading.Lock()
        self._running: dict[Hashable, SharedRun] = {}
        self._finished: collections.OrderedDict[Hashable, SharedRun] = collections.OrderedDict()
        self.started = 0  # runs started (the rest of the requests were shared)

    def follow(
        self, key: Hashable | None, start: Callable[[], Iterator[Frame]], stop: Callable[[], bool] = lambda: False
    ) -> Iterator[Frame]:
        """The frames of the run of `key`: the one in progress, a finished one, or `start()`'s (key None: always a
        run of its own). Stops following when stop() is true; the run ends when its last follower leaves."""
        run = self._join(key, start)
        try:
            yield from run.follow(stop)
        finally:
            self._leave(key, run)

    def _join(self, key: Hashable | None, start: Callable[[], Iterator[Frame]]) -> SharedRun:
        with self._lock:
            run = None if key is None else self._running.get(key) or self._finished.get(key)
            if run is not None and run.finished and run.error is not None:
                run = None  # a run that failed is tried again
            if run is None:
                run, self.started = SharedRun(start()), self.started + 1
                if key is not None:
                    self._finished.pop(key, None)
                    self._running[key] = run
            elif key in self._finished:
                self._finished.move_to_end(key)
            run.followers += 1
            return run

    def _leave(self, key: Hashable | None, run: SharedRun) -> None:
        with self._lock:
            run.followers -= 1
            if run.followers:
                return
            complete = run.finished and run.error is None
            if key is not None and self._running.get(key) is run:
                del self._running[key]
                if complete:
                    self._finished[key] = run
                    while len(self._finished) > self.cache_runs:
                        self._finished.popitem(last=False)
        if not run.finished:
            run.close()
