"""Atomic writes and line-checked JSONL reading.

Everything rkd writes goes through :func:`atomic_write`: a temp file in the same folder,
fsynced, then renamed over the target, so a killed process leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from retrieval_kd.errors import DataError


def fsync_dir(path: Path) -> None:
    """Makes a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Calls ``write`` on a temp file beside ``path``, then fsyncs and renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields ``(line number, line without its newline)`` for every non-blank line; a missing file
    raises :class:`DataError` naming it. Every line-oriented reader builds on this, so their
    ``file:line`` messages count lines the same way."""
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    with f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line.rstrip("\r\n")


def iter_jsonl_numbered(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(line number, record)`` for every non-blank line, counting lines in the file (blank
    ones included), so a caller's own checks can name the same ``file:line`` as a parse error.

    Raises:
        DataError: a malformed line, a line that is not an object, or one missing a ``required``
            field, with file and line number.
    """
    for lineno, line in iter_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSON line ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        missing = [k for k in required if k not in record]
        if missing:
            raise DataError(f"{path}:{lineno}: missing field(s) {missing}; a record needs {list(required)}")
        yield lineno, record


def iter_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """Yields one dict per non-blank line; a bad line raises with file and line number."""
    for _, record in iter_jsonl_numbered(path, required):
        yield record
