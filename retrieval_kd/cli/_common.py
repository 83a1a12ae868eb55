"""What every command shares: error handling, consoles, progress."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console

from retrieval_kd.errors import RkdError

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turns an :class:`RkdError` into one red line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
    """rkd draws its own progress; the libraries' tqdm bars and info lines would interleave."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # sentence-transformers' and ir_datasets' own bars
    for name in ("sentence_transformers", "transformers", "ir_datasets", "datasets", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def progress() -> Iterator[Any]:
    from retrieval_kd.progress import RichProgress

    p = RichProgress()
    with p.live():
        yield p


def say(message: str) -> None:
    err.print(message, highlight=False, markup=False)
