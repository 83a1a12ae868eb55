"""Progress reporting without a UI dependency in the library.

Library functions take an optional :class:`Progress` callback object; the CLI passes one backed
by rich, tests pass nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


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
        speed = self._progress._tasks[self._id].speed
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


def ensure(progress: Progress | None) -> Progress:
    return progress if progress is not None else NullProgress()
