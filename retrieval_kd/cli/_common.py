"""What every command shares: error handling, logging, consoles, progress."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console

from retrieval_kd.errors import RkdError

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def cli_errors(fn: F) -> F:
    """Turns an :class:`RkdError` into one red line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except RkdError as e:
            from rich.markup import escape

            # escape: messages quote config sections like [train], which rich would eat as markup
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def quiet_libraries() -> None:
    """rkd draws its own progress; the libraries' tqdm bars would interleave with it."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # sentence-transformers' and ir_datasets' own bars


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (typer's CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def setup_logging(verbose: bool = False) -> Callable[[], None]:
    """Lets WARNING and above from any logger reach stderr; INFO too with ``verbose``.

    Per-logger levels cannot do this: ir_datasets sets its loggers to INFO, with their own
    handler and no propagation, on first use. So the switch is global: ``logging.disable``
    below WARNING (or nothing, when verbose), plus one handler on the root logger for the
    loggers that propagate.

    Returns:
        A function that puts logging back as it was (the CLI calls it when the command ends, so
        a test process that runs several commands keeps its own logging).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    level = logging.INFO if verbose else logging.WARNING
    handler = _StderrHandler(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    before = (root.level, logging.root.manager.disable)
    root.addHandler(handler)
    root.setLevel(level)
    logging.disable(logging.NOTSET if verbose else logging.INFO)
    if verbose:  # transformers logs through its own handler, at the level this names
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(before[0])
        logging.disable(before[1])

    return restore


@contextmanager
def progress() -> Iterator[Any]:
    """Rich bars on a terminal, plain lines every ``RKD_PROGRESS_INTERVAL`` seconds (30) in a
    log (``nohup``, CI), where rich would draw only at the end."""
    from retrieval_kd.progress import auto_progress

    p = auto_progress()
    with p.live():
        yield p


def print_table(table: Any) -> None:
    """Prints a rich table whole. To a terminal it prints at the terminal's width. Anywhere else
    (a file, a pipe, CI's log) it prints at the table's own width. Rich's 80-column default there
    cut figures to "0.39…"."""
    if out.is_terminal:
        out.print(table)
        return
    width = out.measure(table, options=out.options.update_width(10_000)).maximum
    Console(width=max(width, out.width)).print(table)  # writes to sys.stdout as ``out`` does


def say(message: str) -> None:
    err.print(message, highlight=False, markup=False, soft_wrap=True)
