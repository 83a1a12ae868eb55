"""Progress reporting without a UI dependency in the library.

Library functions take an optional :class:`Progress` callback object; the CLI passes one from
:func:`auto_progress`, tests pass nothing. On a terminal that is rich's bars; anywhere else
(``nohup``, CI, a pipe) rich would draw them only at the end, so :class:`LineProgress` writes one
plain line per task at a steady interval instead::

    training 120/460 steps (26%) 0.42 steps/s, ETA 13m29s
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Protocol

from retrieval_kd.errors import RkdError


class Task(Protocol):
    def advance(self, n: int) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: int | None, unit: str = "items") -> Task: ...


class _NullTask:
    def advance(self, n: int) -> None:
        pass


class NullProgress:
    def task(self, description: str, total: int | None, unit: str = "items") -> Task:
        return _NullTask()


class _RichTask:
    """One bar; shows the rate in the task's own unit (pairs/s, docs/s, steps/s)."""

    def __init__(self, progress: Any, task_id: Any, unit: str) -> None:
        self._progress = progress
        self._id = task_id
        self._unit = unit

    def advance(self, n: int) -> None:
        self._progress.advance(self._id, n)
        task = self._progress._tasks[self._id]
        speed = task.speed if task.total != 1 else None  # a one-step task has a duration, not a rate
        if speed:
            self._progress.update(self._id, rate=f"{speed:,.1f} {self._unit}/s")


class RichProgress:
    """Rich progress bars with a rate column (pairs/s, docs/s, steps/s)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )

    def task(self, description: str, total: int | None, unit: str = "items") -> Task:
        task_id = self._progress.add_task(description, total=total, rate="")
        return _RichTask(self._progress, task_id, unit)

    @contextmanager
    def live(self) -> Iterator[RichProgress]:
        with self._progress:
            yield self


def format_duration(seconds: float) -> str:
    """``13m29s``, ``2h05m00s``, ``42s``.

    Example:
        >>> format_duration(809.5), format_duration(7500), format_duration(42.4)
        ('13m29s', '2h05m00s', '42s')
    """
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def format_rate(rate: float) -> str:
    """Three significant figures or so: ``0.42``, ``12.5``, ``1,234``.

    Example:
        >>> format_rate(0.4212), format_rate(12.46), format_rate(1234.4)
        ('0.42', '12.5', '1,234')
    """
    if rate < 10:
        return f"{rate:.2f}"
    if rate < 100:
        return f"{rate:.1f}"
    return f"{rate:,.0f}"


class _LineTask:
    """One task of a :class:`LineProgress`: a line when due, and one when complete."""

    def __init__(self, owner: LineProgress, description: str, total: int | None, unit: str) -> None:
        self._owner = owner
        self.description = description
        self.total = total
        self.unit = unit
        self.completed = 0
        self.start = owner.clock()
        self._last = self.start
        self.finished = False
        self._stopped = False

    def advance(self, n: int) -> None:
        self.completed += n
        now = self._owner.clock()
        if self.total is not None and self.completed >= self.total:
            self.finish()
        elif now - self._last >= self._owner.interval:
            self._last = now
            self._owner.write(self.line(now))

    def finish(self, stopped: bool = False) -> None:
        """Writes the closing line (once); ``stopped``: the work ended early, by an error."""
        if not self.finished:
            self.finished = True
            self._stopped = stopped
            self._owner.write(self.line(self._owner.clock()))

    def line(self, now: float) -> str:
        """``training 120/460 steps (26%) 0.42 steps/s, ETA 13m29s``; when done,
        ``..., done in 18m15s``."""
        elapsed = now - self.start
        rate = self.completed / elapsed if elapsed > 0 else 0.0
        count = f"{self.completed:,}"
        if self.total is not None:
            share = self.completed / self.total if self.total else 1.0
            count += f"/{self.total:,} {self.unit} ({int(share * 100)}%)"
        else:
            count += f" {self.unit}"
        text = f"{self.description} {count}"
        if rate > 0 and self.total != 1:  # a one-step task has a duration, not a rate
            text += f" {format_rate(rate)} {self.unit}/s"
        if self.finished:
            how = "stopped after" if self._stopped else "done in"
            return f"{text}, {how} {format_duration(elapsed)}"
        if rate > 0 and self.total is not None:
            text += f", ETA {format_duration((self.total - self.completed) / rate)}"
        return text


class LineProgress:
    """Plain progress lines for logs: one per task every ``interval`` seconds and at its end.

    Args:
        interval: seconds between two lines of a task (``RKD_PROGRESS_INTERVAL`` in the CLI).
        stream: where the lines go; default the current ``sys.stderr``, flushed per line.
        clock: seconds as a float; tests pass a fake one.

    Example:
        >>> now = [0.0]
        >>> p = LineProgress(interval=30, stream=sys.stdout, clock=lambda: now[0])
        >>> task = p.task("training", 460, unit="steps")
        >>> now[0] = 285.7; task.advance(120)
        training 120/460 steps (26%) 0.42 steps/s, ETA 13m29s
    """

    def __init__(
        self,
        interval: float = 30.0,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._stream = stream
        self._tasks: list[_LineTask] = []

    def write(self, line: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def task(self, description: str, total: int | None, unit: str = "items") -> Task:
        task = _LineTask(self, description, total, unit)
        self._tasks.append(task)
        return task

    @contextmanager
    def live(self) -> Iterator[LineProgress]:
        """Closes every task on the way out, so a log ends with each task's final count."""
        try:
            yield self
        except BaseException:
            for task in self._tasks:
                task.finish(stopped=True)
            raise
        for task in self._tasks:
            task.finish()


def auto_progress(
    stream: IO[str] | None = None, interval: float | None = None
) -> RichProgress | LineProgress:
    """Rich bars on a terminal; :class:`LineProgress` otherwise.

    Args:
        stream: the stream progress goes to (default ``sys.stderr``), checked with ``isatty()``.
        interval: seconds between lines when not a terminal; default ``RKD_PROGRESS_INTERVAL`` or 30.
    """
    stream = stream if stream is not None else sys.stderr
    if stream.isatty():
        return RichProgress()
    if interval is None:
        raw = os.environ.get("RKD_PROGRESS_INTERVAL", "30")
        try:
            interval = float(raw)
        except ValueError:
            interval = -1.0
        if not interval > 0:
            raise RkdError(f"RKD_PROGRESS_INTERVAL={raw!r}: expected a number of seconds > 0, such as 30")
    return LineProgress(interval=interval)


def ensure(progress: Progress | None) -> Progress:
    return progress if progress is not None else NullProgress()
