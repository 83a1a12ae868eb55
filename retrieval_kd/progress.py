"""Progress reporting without a UI dependency in the library.

Library functions take an optional :class:`Progress` callback object; the CLI passes one backed
by rich, tests pass nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


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
    def __init__(self, progress: object, task_id: object) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: int) -> None:
        self._progress.advance(self._id, n)  # type: ignore[attr-defined]


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
        task_id = self._progress.add_task(description, total=total, rate="", unit=unit)
        progress = self._progress

        class _T(_RichTask):
            def advance(self, n: int) -> None:
                progress.advance(task_id, n)
                t = progress.tasks[[x.id for x in progress.tasks].index(task_id)]
                speed = t.finished_speed or t.speed
                if speed:
                    progress.update(task_id, rate=f"{speed:,.1f} {unit}/s")

        return _T(progress, task_id)

    @contextmanager
    def live(self) -> Iterator[RichProgress]:
        with self._progress:
            yield self


def ensure(progress: Progress | None) -> Progress:
    return progress if progress is not None else NullProgress()
