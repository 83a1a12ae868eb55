"""Atomic writes and line-checked JSONL reading.

Everything rkd writes goes through :func:`atomic_write`: a temp file in the same folder,
fsynced, then renamed over the target, so a killed process leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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


# A JSON integer longer than this is refused: no id, count or score needs more digits, and
# Python refuses to convert ints past 4,300 digits anyway (with a ValueError, mid-parse).
MAX_JSON_INT_DIGITS = 100
# Ids and texts are kept as UTF-8 (Parquet, TREC files, fingerprints); JSON's "\ud800" escape
# decodes to a lone surrogate, which has no UTF-8 form.
_SURROGATE = re.compile("[\ud800-\udfff]")
# A decimal number as score and run files write it (float() would also take "1_0", "١", "nan").
DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _JsonRefused(ValueError):
    """A JSON text that parses but holds a value rkd cannot keep; the message says which."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_JSON_INT_DIGITS:
        raise _JsonRefused(f"a number with {digits} digits (at most {MAX_JSON_INT_DIGITS})")
    return int(text)


def _loads(text: str) -> Any:
    """``json.loads`` whose every refusal is a ValueError (JSONDecodeError or _JsonRefused)."""
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise _JsonRefused("JSON nested too deeply") from None


def _json_problem(e: json.JSONDecodeError) -> str:
    # some of json's messages end in "at", meant to be followed by a position
    return f"{e.msg.removesuffix(' at')} at column {e.colno}"


def parse_json_line(line: str, where: str, malformed: str = "malformed JSON line") -> Any:
    """Parses one line of JSON text.

    Args:
        line: the text.
        where: ``file:line``, the prefix of every error message.
        malformed: how a syntax error is described.

    Raises:
        DataError: a syntax error (with its column), nesting too deep, a number too long.
    """
    try:
        return _loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: {malformed} ({_json_problem(e)})") from None
    except _JsonRefused as e:
        raise DataError(f"{where}: {e}") from None


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing or unreadable file raises :class:`DataError` naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def decode_utf8(data: bytes, path: Path, first_line: int = 1) -> str:
    """Decodes UTF-8 (a leading byte-order mark dropped); bad bytes raise :class:`DataError`
    naming ``file:line`` and the byte's column (lines counted from ``first_line``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
            "rkd reads UTF-8 files"
        ) from None
    return text[1:] if first_line == 1 and text.startswith("\ufeff") else text


def read_json(path: Path) -> Any:
    """Parses a JSON file; a missing file, bad UTF-8 or bad JSON raises :class:`DataError`
    naming the file (and the line where the parser stopped)."""
    text = decode_utf8(read_bytes(path), path)
    try:
        return _loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({_json_problem(e)})") from None
    except _JsonRefused as e:
        raise DataError(f"{path}: invalid JSON ({e})") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """:func:`read_json` for files that hold one JSON object (manifests, metrics)."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object {{...}}, got {type(value).__name__}")
    return value


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields ``(line number, line without its newline)`` for every non-blank line.

    Lines end at ``\\n`` (a ``\\r`` before it is dropped), so numbers match ``wc -l`` and
    editors. Every line-oriented reader builds on this, so their ``file:line`` messages count
    lines the same way.

    Raises:
        DataError: a missing or unreadable file, or a line that is not UTF-8 (file, line and
            column).
    """
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        try:
            for lineno, raw in enumerate(f, start=1):
                line = decode_utf8(raw, path, lineno).rstrip("\r\n")
                if line.strip():
                    yield lineno, line
        except OSError as e:  # a folder opens on Linux and fails on the first read
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def iter_jsonl_numbered(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(line number, record)`` for every non-blank line, counting lines in the file (blank
    ones included), so a caller's own checks can name the same ``file:line`` as a parse error.

    Raises:
        DataError: bad UTF-8, a malformed line, a line that is not an object, or one missing a
            ``required`` field, with file and line number.
    """
    for lineno, line in iter_lines(path):
        record = parse_json_line(line, f"{path}:{lineno}")
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


# -- fields -------------------------------------------------------------------------------------


def show(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters so an error message stays one short line.

    Example:
        >>> show("x" * 100, limit=12)
        "'xxxxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_utf8(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form (no lone surrogate); O(1) for ASCII text."""
    return text.isascii() or _SURROGATE.search(text) is None


def check_id(value: object, what: str, where: str) -> str:
    """An id as rkd keeps it: a non-empty string without whitespace (TREC run files and score
    files split on whitespace), or a JSON integer, kept as its decimal string.

    Args:
        value: the parsed value.
        what: its name in messages ("doc id").
        where: ``file:line``.

    Raises:
        DataError: null, a bool, a float, an empty string, whitespace, or a lone surrogate.

    Example:
        >>> check_id(7, "query id", "q.jsonl:1"), check_id("d1", "doc id", "c.jsonl:3")
        ('7', 'd1')
        >>> check_id(None, "doc id", "c.jsonl:3")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.DataError: c.jsonl:3: doc id None is not a string; ids are ...
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        problem = "is not a string"
    elif not value:
        problem = "is empty"
    elif any(c.isspace() for c in value):
        problem = "contains whitespace"
    elif not is_utf8(value):
        problem = "holds an unpaired surrogate escape (such as \\ud800)"
    else:
        return value
    raise DataError(f"{where}: {what} {show(value)} {problem}; ids are non-empty strings without whitespace")


def check_text(value: object, what: str, where: str, *, optional: bool = False) -> str:
    """A text field: a string (``optional``: also null or absent, read as ``""``).

    Raises:
        DataError: any other JSON value, or a string with a lone surrogate.
    """
    if value is None and optional:
        return ""
    if isinstance(value, str):
        if is_utf8(value):
            return value
        raise DataError(f"{where}: {what} holds an unpaired surrogate escape (such as \\ud800), not text")
    expected = "a string or null" if optional else "a string"
    raise DataError(f"{where}: {what} must be {expected}, got {show(value)}")
