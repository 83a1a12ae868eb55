"""Staged adds (an import): parts written aside, then committed to the store all at once.

``.staging-<writer>/`` holds the parts of :meth:`ScoreStore.staged`; ``commit.json`` in it, written
atomically, is the point of no return. A writer's next open settles what a kill left: it
finishes a commit that was under way, or discards parts that never reached one.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from retrieval_kd.errors import DataError
from retrieval_kd.io import atomic_write_json, fsync_dir, read_json
from retrieval_kd.scores import journal

log = logging.getLogger("retrieval_kd.scores.store")

COMMIT = "commit.json"


def staging_dir(path: Path, writer: str) -> Path:
    """Where :meth:`ScoreStore.staged` writes parts that are not yet part of the store."""
    return path / f".staging-{writer}"


def commit_staged(path: Path, writer: str, entries: list[journal.Entry]) -> None:
    """Makes the staged parts ``entries`` part of the store, all at once.

    ``commit.json`` (atomic) is the point of no return: a kill before it leaves an unfinished
    staging area that the writer's next open discards; a kill after it, one that the next open
    finishes. The parts are then renamed into the folder (readers ignore unjournaled parts) and
    the journal is replaced, atomically, by one listing them too: readers see none of them, then
    all.
    """
    staging = staging_dir(path, writer)
    atomic_write_json(staging / COMMIT, [e._asdict() for e in entries])
    _finish_commit(path, writer, staging)


def _finish_commit(path: Path, writer: str, staging: Path) -> None:
    raw = read_json(staging / COMMIT)
    pattern = journal.part_pattern(writer)
    if not isinstance(raw, list) or not all(
        isinstance(e, dict) and pattern.fullmatch(str(e.get("file"))) for e in raw
    ):
        raise DataError(f"{staging / COMMIT}: not a list of this writer's part entries")
    entries = [journal.Entry(str(e["file"]), int(e["rows"]), str(e["sha256"])) for e in raw]
    for entry in entries:
        if (staging / entry.file).exists():
            os.replace(staging / entry.file, path / entry.file)
    fsync_dir(path)
    kept = journal.read(path, writer)[0]
    have = {e.file for e in kept}
    if any(e.file not in have for e in entries):
        journal.rewrite(path, writer, kept + [e for e in entries if e.file not in have])
    shutil.rmtree(staging)
    fsync_dir(path)


def settle_staging(path: Path, writer: str) -> str | None:
    """Finishes a commit a kill interrupted, or discards staged parts that never reached one.

    Returns:
        ``"finished"``, ``"discarded"``, or ``None`` when the writer has no staging area.
    """
    staging = staging_dir(path, writer)
    if not staging.is_dir():
        return None
    if (staging / COMMIT).is_file():
        log.info("finishing the commit of %s (a killed run)", staging)
        _finish_commit(path, writer, staging)
        return "finished"
    log.warning("discarding %s: an import that stopped before its commit (none of it was stored)", staging)
    shutil.rmtree(staging)
    return "discarded"
