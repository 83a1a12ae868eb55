"""Per-writer part journals: append-only JSON lines, one fsynced line per part.

``parts-<writer>.jsonl``::

    {"format": "rkd-score-journal/2", "writer": "rank0"}
    {"file": "part-rank0-000001.parquet", "rows": 512, "sha256": "9f2c…"}
    …

Adding a part appends one line and fsyncs it, so a batch costs the same whether the journal lists
ten parts or eighty thousand (format 1 rewrote the whole journal per batch). A process killed
mid-append leaves a torn last line (a prefix without its newline, or a line ending in NUL bytes
where a crash extended the file before its data reached the disk): readers ignore it, and the writer's next
open truncates it and adopts the part it described. Any other line that does not parse is
damage, and an error naming ``file:line``; :func:`scan` lists such lines instead, for
``rkd scores verify`` to drop. A line may only name a part file of its own writer in the
store's folder, so a journal cannot point a reader outside the store.

Format-1 journals (``parts-<writer>.json``, one JSON object listing every part) are still read;
a writer's ``.jsonl``, once present, supersedes its ``.json``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from retrieval_kd.errors import DataError
from retrieval_kd.io import atomic_write, fsync_dir, read_json

FORMAT = "rkd-score-journal/2"
LEGACY_FORMAT = "rkd-score-parts/1"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Entry(NamedTuple):
    """One journaled part."""

    file: str
    rows: int
    sha256: str

    @property
    def seq(self) -> int:
        """The part's sequence number within its writer (from its name)."""
        return int(self.file.rsplit("-", 1)[1].split(".", 1)[0])


def part_name(writer: str, seq: int) -> str:
    """``part-<writer>-000001.parquet``: zero-padded, so names sort in sequence order."""
    return f"part-{writer}-{seq:06d}.parquet"


def part_pattern(writer: str) -> re.Pattern[str]:
    """Matches exactly the part file names of ``writer``; group 1 is the sequence number."""
    return re.compile(rf"part-{re.escape(writer)}-(\d{{6,}})\.parquet")


def path(folder: Path, writer: str) -> Path:
    return folder / f"parts-{writer}.jsonl"


def legacy_path(folder: Path, writer: str) -> Path:
    return folder / f"parts-{writer}.json"


def writers(folder: Path) -> list[str]:
    """Every writer with a journal (either format) in ``folder``, sorted by name."""
    names = {p.name[len("parts-") : -len(".jsonl")] for p in folder.glob("parts-*.jsonl")}
    names |= {p.name[len("parts-") : -len(".json")] for p in folder.glob("parts-*.json")}
    return sorted(names)


def read(folder: Path, writer: str) -> tuple[list[Entry], int | None]:
    """The writer's journaled parts in sequence order, and where a torn last line starts.

    Returns:
        ``(entries, torn_at)``: ``torn_at`` is the byte offset of a torn last line (a process
        killed mid-append), ``None`` when the journal ends cleanly. Format-1 journals never tear.

    Raises:
        DataError: a line (other than a torn last one) is not JSON, the header is not a journal
            header of this writer, or an entry is malformed or names a file that is not one of this
            writer's parts in this folder (``file:line`` and what was expected).
    """
    return _read(folder, writer, None)


def scan(folder: Path, writer: str) -> tuple[list[Entry], int | None, list[str]]:
    """:func:`read`, except that a damaged line is listed, not raised: ``(entries, torn_at,
    problems)``, one ``file:line: what`` message per line left out (a damaged header counts as
    one; the entries after it are still read). What ``rkd scores verify`` repairs from."""
    problems: list[str] = []
    entries, torn_at = _read(folder, writer, problems)
    return entries, torn_at, problems


def _read(folder: Path, writer: str, problems: list[str] | None) -> tuple[list[Entry], int | None]:
    file = path(folder, writer)
    if file.exists():
        return _read_lines(file, writer, problems)
    legacy = legacy_path(folder, writer)
    if not legacy.exists():
        return [], None
    try:
        journal = read_json(legacy)
        if not isinstance(journal, dict) or journal.get("format") != LEGACY_FORMAT:
            raise DataError(f"{legacy}: not a score store journal (expected format {LEGACY_FORMAT!r})")
        raw = journal.get("parts")
        if not isinstance(raw, list):
            raise DataError(f"{legacy}: 'parts' is not a list of part entries")
    except DataError as e:
        if problems is None:
            raise
        problems.append(str(e))
        return [], None
    pattern = part_pattern(writer)
    return _sorted(_entries(legacy, writer, pattern, [(0, e) for e in raw], problems), legacy, problems), None


def _read_lines(file: Path, writer: str, problems: list[str] | None) -> tuple[list[Entry], int | None]:
    data = file.read_bytes()
    lines = data.split(b"\n")  # the last item is b"" when the journal ends with a newline
    torn_at: int | None = len(data) - len(lines[-1]) if lines[-1] else None
    complete = lines[:-1]
    offset = 0
    records: list[tuple[int, Any]] = []
    for lineno, line in enumerate(complete, start=1):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        if line.endswith(b"\0") and lineno == len(complete) and torn_at is None:
            # The file grew but the end of the line never reached the disk (a crash leaves NUL
            # bytes there, and JSON text never holds one): a torn append, not damage.
            torn_at = start
            break
        try:
            records.append((lineno, json.loads(line)))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            _problem(problems, f"{file}:{lineno}: malformed journal line ({e})")
    if not records:
        return [], torn_at
    lineno, header = records[0]
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("writer") != writer:
        _problem(
            problems,
            f"{file}:{lineno}: expected the journal header "
            f'{{"format": "{FORMAT}", "writer": "{writer}"}}, got {header!r}',
        )
        if not (isinstance(header, dict) and "file" in header):
            records = records[1:]  # a damaged header; an entry in its place is still read
    else:
        records = records[1:]
    return _sorted(_entries(file, writer, part_pattern(writer), records, problems), file, problems), torn_at


def _problem(problems: list[str] | None, message: str) -> None:
    """Raises ``message`` as a DataError, or lists it when ``problems`` collects them (a scan)."""
    if problems is None:
        raise DataError(message + "; `rkd scores verify` drops damaged lines and re-adopts their parts")
    problems.append(message)


def _entries(
    file: Path,
    writer: str,
    pattern: re.Pattern[str],
    records: list[tuple[int, Any]],
    problems: list[str] | None,
) -> list[Entry]:
    entries = []
    for lineno, raw in records:
        try:
            entries.append(_entry(file, lineno, writer, pattern, raw))
        except DataError as e:
            _problem(problems, str(e))
    return entries


def _entry(file: Path, lineno: int, writer: str, pattern: re.Pattern[str], raw: Any) -> Entry:
    where = f"{file}:{lineno}" if lineno else str(file)
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a part entry {{'file', 'rows', 'sha256'}}, got {raw!r}")
    name, rows, digest = raw.get("file"), raw.get("rows"), raw.get("sha256")
    if not isinstance(name, str) or not pattern.fullmatch(name):
        # Refuses absolute paths, "..", sub-folders and other writers' names alike.
        raise DataError(
            f"{where}: part file {name!r} is not a part of writer {writer!r} in this folder "
            f"(expected part-{writer}-NNNNNN.parquet); a journal may not name files elsewhere"
        )
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise DataError(f"{where}: part {name}: rows {rows!r} is not a non-negative integer")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise DataError(f"{where}: part {name}: sha256 {digest!r} is not 64 lowercase hex digits")
    return Entry(name, rows, digest)


def _sorted(entries: list[Entry], file: Path, problems: list[str] | None) -> list[Entry]:
    by_file: dict[str, Entry] = {}
    for e in entries:
        if by_file.setdefault(e.file, e) != e:  # the same line twice (an adopted part) counts once
            _problem(problems, f"{file}: two different lines name part {e.file}")
            by_file.pop(e.file)  # neither is believed; a rescan adopts the part if it is whole
    return sorted(by_file.values(), key=lambda e: e.seq)


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(", ", ": ")) + "\n").encode()


def _header(writer: str) -> bytes:
    return _line({"format": FORMAT, "writer": writer})


def append(folder: Path, writer: str, entry: Entry) -> None:
    """Appends one entry and fsyncs it; creates the journal (header first) if absent."""
    file = path(folder, writer)
    fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        new = os.fstat(fd).st_size == 0
        # One write per line keeps a kill's damage to a torn tail of the last line.
        os.write(fd, (_header(writer) if new else b"") + _line(entry._asdict()))
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(folder)


def rewrite(folder: Path, writer: str, entries: list[Entry]) -> None:
    """Replaces the writer's journal atomically (used to drop or convert entries, never per add).

    The new ``.jsonl`` is renamed into place before a format-1 ``.json`` is removed, and the
    ``.jsonl`` supersedes the ``.json`` whenever both exist, so a kill in between loses nothing.
    """
    body = _header(writer) + b"".join(_line(e._asdict()) for e in entries)
    atomic_write(path(folder, writer), lambda f: f.write(body))
    legacy = legacy_path(folder, writer)
    if legacy.exists():
        legacy.unlink()
        fsync_dir(folder)


def truncate(folder: Path, writer: str, at: int) -> None:
    """Cuts a torn last line off the writer's journal, so the next append starts a clean line."""
    fd = os.open(path(folder, writer), os.O_WRONLY)
    try:
        os.ftruncate(fd, at)
        os.fsync(fd)
    finally:
        os.close(fd)
