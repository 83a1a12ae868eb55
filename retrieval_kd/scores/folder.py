"""The store folder's housekeeping: manifest, writer locks, crash recovery and quarantine.

Everything here acts on ``root/<teacher_fingerprint>/`` directly; :mod:`retrieval_kd.scores.store`
holds the data path (reading, merging, adding).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError
from retrieval_kd.io import atomic_write_json, fsync_dir, read_json
from retrieval_kd.scores import journal
from retrieval_kd.scores.parts import KINDS, DamagedPart, Kind, read_part

log = logging.getLogger("retrieval_kd.scores.store")

FORMAT = "rkd-score-store/2"
VERSION = 2
FORMAT_1 = "rkd-score-store/1"
# Names become file and folder names, so keep them to characters that are safe everywhere.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+@-]{0,199}")

# -- manifest -------------------------------------------------------------------------------


def create_manifest(path: Path, teacher_fingerprint: str, teacher_spec: Any, kind: str) -> None:
    """Writes a format-2 manifest (atomically: of two racing creators one file stays whole)."""
    atomic_write_json(
        path / "manifest.json",
        {
            "format": FORMAT,
            "version": VERSION,
            "kind": kind,
            "teacher_fingerprint": teacher_fingerprint,
            "teacher": teacher_spec,
            "created": _now(),
        },
    )


def read_manifest(path: Path, teacher_fingerprint: str) -> dict[str, Any]:
    """The parsed manifest; a format-1 one gains ``version`` 1 and ``kind`` pointwise in memory.

    Raises:
        RkdError: not a manifest of a known format and version, or of another teacher.
    """
    file = path / "manifest.json"
    manifest = read_json(file)
    if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, FORMAT_1):
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise RkdError(
            f"{file}: not a score store manifest (format {found!r}; this rkd reads {[FORMAT_1, FORMAT]})"
        )
    if manifest["format"] == FORMAT_1:
        manifest = {**manifest, "version": 1, "kind": "pointwise"}
    elif manifest.get("version") != VERSION or manifest.get("kind") not in KINDS:
        raise RkdError(
            f"{file}: expected version {VERSION} and a kind from {sorted(KINDS)}, "
            f"got version {manifest.get('version')!r}, kind {manifest.get('kind')!r}"
        )
    if manifest.get("teacher_fingerprint") != teacher_fingerprint:
        raise RkdError(
            f"{path} holds scores of teacher {manifest.get('teacher_fingerprint')!r}, not "
            f"{teacher_fingerprint!r}; the folder must be named after its teacher's fingerprint"
        )
    return manifest


def upgrade_manifest(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Rewrites a format-1 manifest as format 2 (pointwise); parts and other fields stay."""
    upgraded = {k: v for k, v in manifest.items() if k not in ("version", "kind")}
    upgraded.update(format=FORMAT, version=VERSION, kind="pointwise", upgraded_from=FORMAT_1, upgraded=_now())
    atomic_write_json(path / "manifest.json", upgraded)
    log.info("upgraded score store %s from %s to %s", path, FORMAT_1, FORMAT)
    return upgraded


def check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise RkdError(
            f"{what} {name!r} cannot name a file: use letters, digits and _.:=+@- "
            "(not first), at most 200 characters"
        )


def teacher_folder_hint(root: Path) -> str:
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return ""
    fp = read_json(manifest).get("teacher_fingerprint")
    return f" ({root} is itself the store of teacher {fp!r}: pass its parent folder as the root)"


def refuse_teacher_folder_as_root(root: Path) -> None:
    # Opening a teacher's folder as a root would quietly nest a second store inside the first.
    hint = teacher_folder_hint(root)
    if hint:
        raise RkdError(f"{root} is not a score store root{hint}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- locks, recovery, quarantine ------------------------------------------------------------


def lock(path: Path, writer: str, *, must: bool = True) -> int | None:
    """Takes ``writer``'s flock without waiting and returns its descriptor.

    Returns:
        The descriptor (close it to release), or ``None`` when a live process holds the lock
        and ``must`` is false.

    Raises:
        RkdError: a live process holds the lock and ``must`` is true.
    """
    # Two live processes under one writer name would overwrite each other's parts and journal;
    # an flock makes that an error instead, and dies with its process, so a killed run leaves
    # no stale lock behind.
    fd = os.open(path / f".writer-{writer}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if not must:
            return None
        raise RkdError(
            f"score store {path}: writer {writer!r} is in use by another "
            "process or open store; give each process its own writer name"
        ) from None
    return fd


def recover(path: Path, kind: Kind, writer: str) -> int:
    """Cleans up after a killed run of ``writer`` and converts its format-1 journal.

    Removes the writer's temp files, cuts a torn last journal line, adopts each part renamed into
    place but never journaled (or quarantines it if it does not read back). Call with the
    writer's lock held.

    Returns:
        The next free part sequence number of the writer.
    """
    if journal.legacy_path(path, writer).exists():
        if journal.path(path, writer).exists():
            journal.legacy_path(path, writer).unlink()  # a conversion killed before its cleanup
        else:
            journal.rewrite(path, writer, journal.read(path, writer)[0])
    entries, torn_at = journal.read(path, writer)
    if torn_at is not None:
        log.info("cutting a torn last line off %s (a killed run)", journal.path(path, writer))
        journal.truncate(path, writer, torn_at)
    # atomic_write's temp names are ".<target name>.<random>.tmp"; match only this writer's.
    esc = re.escape(writer)
    stray = re.compile(rf"\.(part-{esc}-\d{{6,}}\.parquet|parts-{esc}\.jsonl?)\..+\.tmp")
    pattern = journal.part_pattern(writer)
    journaled = {entry.file for entry in entries}
    seqs = [0, *(entry.seq for entry in entries)]
    for file in sorted(path.iterdir()):
        if stray.fullmatch(file.name):
            log.info("removing %s left by a killed run", file)
            file.unlink()
            continue
        match = pattern.fullmatch(file.name)
        if match is None:
            continue
        seqs.append(int(match.group(1)))
        if file.name in journaled:
            continue
        # Renamed into place but the process died before its journal line: the part was
        # fsynced before its rename, so if it reads back it is whole and worth keeping.
        try:
            table, digest = read_part(file, kind)
        except DamagedPart as err:
            log.warning("setting aside unjournaled part %s: %s", file, err.reason)
            quarantine(path, file)
            continue
        log.info("adopting unjournaled part %s (%d rows)", file, table.num_rows)
        journal.append(path, writer, journal.Entry(file.name, table.num_rows, digest))
    quarantined = re.compile(rf"part-{esc}-(\d{{6,}})\.parquet(\.\d+)?")
    if (path / "quarantine").is_dir():
        seqs += [
            int(m.group(1)) for f in (path / "quarantine").iterdir() if (m := quarantined.fullmatch(f.name))
        ]
    return max(seqs) + 1  # never reuse a number, not even a quarantined one


def set_aside(path: Path, writer: str, damage: DamagedPart, held: tuple[str, int] | None) -> None:
    """Moves a damaged part to ``quarantine/`` and drops its journal entry, under its writer's lock.

    Args:
        path: the store folder.
        writer: whose journal lists the part.
        damage: the part and what is wrong with it.
        held: ``(writer, descriptor)`` of the lock the caller already holds, if any.
    """
    fd = held[1] if held is not None and held[0] == writer else lock(path, writer, must=False)
    if fd is None:
        log.warning(
            "score store %s: part %s is damaged but writer %r is live; its keys read as missing here",
            path, damage, writer,
        )  # fmt: skip
        return
    try:
        log.warning(
            "score store %s: part %s is damaged; moving it to quarantine/ so its keys are scored again",
            path, damage,
        )  # fmt: skip
        quarantine(path, damage.file)
        kept = [e for e in journal.read(path, writer)[0] if e.file != damage.file.name]
        journal.rewrite(path, writer, kept)
    finally:
        if held is None or fd != held[1]:
            os.close(fd)


def quarantine(folder: Path, file: Path) -> None:
    """Moves ``file`` (if it exists) into ``folder/quarantine/`` under a name not yet taken."""
    if not file.exists():
        return
    target_dir = folder / "quarantine"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / file.name
    n = 0
    while target.exists():
        n += 1
        target = target_dir / f"{file.name}.{n}"
    os.replace(file, target)
    with contextlib.suppress(OSError):
        fsync_dir(target_dir)
    fsync_dir(folder)
