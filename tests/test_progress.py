"""Progress: plain lines at a steady interval when stderr is not a terminal (fake clock)."""

from __future__ import annotations

import io

import pytest

from retrieval_kd.errors import RkdError
from retrieval_kd.progress import LineProgress, RichProgress, auto_progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_one_line_per_interval_and_one_at_the_end() -> None:
    clock, out = Clock(), io.StringIO()
    progress = LineProgress(interval=30, stream=out, clock=clock)
    with progress.live():
        task = progress.task("training", 460, unit="steps")
        for _ in range(460):  # a step every 2.38 s: 0.42 steps/s
            clock.now += 2.38
            task.advance(1)
    # 13 steps (30.94 s) pass 30 s: a line every 13 steps up to 455 (35), then the final one
    assert len(lines(out)) == 36
    assert lines(out)[:3] == [
        "training 13/460 steps (2%) 0.42 steps/s, ETA 17m43s",  # 447 / (13 / 30.94) = 1063.9 s
        "training 26/460 steps (5%) 0.42 steps/s, ETA 17m12s",
        "training 39/460 steps (8%) 0.42 steps/s, ETA 16m41s",
    ]
    assert lines(out)[-2] == "training 455/460 steps (98%) 0.42 steps/s, ETA 11s"
    assert lines(out)[-1] == "training 460/460 steps (100%) 0.42 steps/s, done in 18m14s"  # 1094.8 s


def test_the_example_line() -> None:
    clock, out = Clock(), io.StringIO()
    task = LineProgress(interval=30, stream=out, clock=clock).task("training", 460, unit="steps")
    clock.now += 20
    task.advance(10)  # before the first interval: silent
    assert out.getvalue() == ""
    clock.now += 265.7
    task.advance(110)
    assert lines(out) == ["training 120/460 steps (26%) 0.42 steps/s, ETA 13m29s"]


def test_interval_is_configurable_and_unknown_totals() -> None:
    clock, out = Clock(), io.StringIO()
    progress = LineProgress(interval=5, stream=out, clock=clock)
    with progress.live():
        task = progress.task("encoding documents", None, unit="docs")
        for _ in range(4):
            clock.now += 3
            task.advance(4096)
    assert lines(out) == [  # at 6 s and 12 s (5 s apart at least), then the end
        "encoding documents 8,192 docs 1,365 docs/s",
        "encoding documents 16,384 docs 1,365 docs/s",
        "encoding documents 16,384 docs 1,365 docs/s, done in 12s",
    ]


def test_a_one_step_task_shows_its_duration_not_a_rate() -> None:
    clock, out = Clock(), io.StringIO()
    progress = LineProgress(interval=5, stream=out, clock=clock)
    with progress.live():
        task = progress.task("building and writing the plaid index", 1, unit="index")
        clock.now += 404
        task.advance(1)
    assert lines(out) == ["building and writing the plaid index 1/1 index (100%), done in 6m44s"]


def test_several_tasks_and_an_error() -> None:
    clock, out = Clock(), io.StringIO()
    progress = LineProgress(interval=30, stream=out, clock=clock)
    with pytest.raises(KeyboardInterrupt), progress.live():
        mined = progress.task("mining", 8, unit="queries")
        clock.now += 4
        mined.advance(8)
        scored = progress.task("scoring", 1000, unit="pairs")
        clock.now += 100
        scored.advance(250)
        raise KeyboardInterrupt
    assert lines(out) == [
        "mining 8/8 queries (100%) 2.00 queries/s, done in 4s",
        "scoring 250/1,000 pairs (25%) 2.50 pairs/s, ETA 5m00s",
        "scoring 250/1,000 pairs (25%) 2.50 pairs/s, stopped after 1m40s",
    ]


def test_nothing_done_yet() -> None:
    clock, out = Clock(), io.StringIO()
    progress = LineProgress(stream=out, clock=clock)
    with progress.live():
        progress.task("scoring", 0, unit="pairs")
        progress.task("training", 10, unit="steps")
    assert lines(out) == ["scoring 0/0 pairs (100%), done in 0s", "training 0/10 steps (0%), done in 0s"]


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_auto_progress_picks_by_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(auto_progress(Stream(tty=True)), RichProgress)
    chosen = auto_progress(Stream(tty=False))
    assert isinstance(chosen, LineProgress) and chosen.interval == 30.0
    monkeypatch.setenv("RKD_PROGRESS_INTERVAL", "2.5")
    chosen = auto_progress(Stream(tty=False))
    assert isinstance(chosen, LineProgress) and chosen.interval == 2.5
    assert auto_progress(Stream(tty=False), interval=7).interval == 7  # type: ignore[union-attr]
    for bad in ("often", "0", "-3"):
        monkeypatch.setenv("RKD_PROGRESS_INTERVAL", bad)
        with pytest.raises(
            RkdError, match=rf"^RKD_PROGRESS_INTERVAL='{bad}': expected a number of seconds > 0"
        ):
            auto_progress(Stream(tty=False))


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59.9, 60, 3599, 3600, 86399)] == [
        "0s",
        "59s",
        "1m00s",
        "59m59s",
        "1h00m00s",
        "23h59m59s",
    ]
