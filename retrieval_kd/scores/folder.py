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
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.io import atomic_write_json, fsync_dir, read_json
from retrieval_kd.scores import journal
from retrieval_kd.scores.parts import KINDS, DamagedPart, Kind, read_part
from retrieval_kd.scores.staging import settle_staging

log = logging.getLogger("retrieval_kd.scores.store")

FORMAT = "rkd-score-store/2"
VERSION = 2
FORMAT_1 = "rkd-score-store/1"
# Names become file and folder names, so keep them to characters that are safe everywhere.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+@-]{0,199}")

# -- manifest -------------------------------------------------------------------------------


def create_manifest(path: Path, teacher_fingerprint: str, teacher_spec: Any, kind: str) -> None:
    """Writes a format-2 manifest (atomically: of two racing creators one file stays whole)."""
    _write_manifest(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "kind": kind,
            "teacher_fingerprint": teacher_fingerprint,
            "teacher": teacher_spec,
            "created": _now(),
        },
    )


# The fields of manifests written before they carried a sha256 (formats 1 and 2).
_UNCHECKED_FIELDS = {
    "format",
    "version",
    "kind",
    "teacher_fingerprint",
    "teacher",
    "created",
    "upgraded_from",
    "upgraded",
}


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    # The manifest carries the sha256 of its other fields: a flipped byte that leaves valid
    # JSON (in the teacher spec, a date) is caught like one that does not.
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    atomic_write_json(path / "manifest.json", {**body, "sha256": hash_json(body, length=64)})


def read_manifest(path: Path, teacher_fingerprint: str) -> dict[str, Any]:
    """The parsed manifest; a format-1 one gains ``version`` 1 and ``kind`` pointwise in memory.

    Raises:
        RkdError: not a manifest of a known format and version, or of another teacher.
        DataError: its recorded sha256 does not match its fields (manifests written before
            rkd recorded one are read unchecked).
    """
    file = path / "manifest.json"
    manifest = read_json(file)
    if isinstance(manifest, dict):
        body = {k: v for k, v in manifest.items() if k != "sha256"}
        # Without a sha256, only the fields rkd wrote before it recorded one may be there: a
        # flipped byte in the key "sha256" itself must not pass for such an older manifest.
        if "sha256" in manifest and manifest["sha256"] != hash_json(body, length=64):
            problem = "its fields no longer match the sha256 recorded in it"
        elif "sha256" not in manifest and set(manifest) - _UNCHECKED_FIELDS:
            problem = (
                f"no sha256, and field(s) {sorted(set(manifest) - _UNCHECKED_FIELDS)} it does not explain"
            )
        else:
            problem = ""
        if problem:
            raise DataError(f"{file}: damaged ({problem}); restore it from a copy, or re-create the store")
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
    _write_manifest(path, upgraded)
    log.info("upgraded score store %s from %s to %s", path, FORMAT_1, FORMAT)
    return upgraded


def check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise RkdError(
            f"{what} {name!r} cannot name a file: use letters, digits and _.:=+@- "
            "(not first), at most 200 characters"
        )


def teachers(root: Path) -> list[str]:
    """The teacher fingerprints with a store under ``root``, sorted."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file())


def find_teacher(root: Path, teacher_fingerprint: str | None, hint: str) -> Path:
    """The folder of ``teacher_fingerprint`` under ``root`` (of its only teacher when ``None``).

    Raises:
        RkdError: no such store, or several teachers and no fingerprint given; the message
            lists the fingerprints found under ``root`` and ends with ``hint``.
    """
    found = teachers(root)
    if teacher_fingerprint is None:
        if not found:
            raise RkdError(f"no teacher score store under {root}{teacher_folder_hint(root)}; {hint}")
        if len(found) > 1:
            raise RkdError(
                f"{len(found)} teacher score stores under {root}: {found}; "
                "pass the teacher fingerprint to choose one"
            )
        teacher_fingerprint = found[0]
    elif teacher_fingerprint not in found:
        raise RkdError(
            f"no score store for teacher {teacher_fingerprint!r} under {root}; found {found}"
            f"{teacher_folder_hint(root)}; {hint}"
        )
    return root / teacher_fingerprint


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
    settle_staging(path, writer)
    if journal.legacy_path(path, writer).exists():
        if journal.path(path, writer).exists():
            journal.legacy_path(path, writer).unlink()  # a conversion killed before its cleanup
        else:
            journal.rewrite(path, writer, journal.read(path, writer)[0])
    entries, torn_at = journal.read(path, writer)
    if torn_at is not None:
        log.info("cutting a torn last line off %s (a killed run)", journal.path(path, writer))
        journal.truncate(path, writer, torn_at)
    for file in stray_temps(path, writer):
        log.info("removing %s left by a killed run", file)
        file.unlink()
    journaled = {entry.file for entry in entries}
    for file in unjournaled(path, writer, journaled):
        adopted = adopt(path, kind, file)
        if adopted is not None:
            journal.append(path, writer, adopted)
    return next_seq(path, writer)


def stray_temps(path: Path, writer: str) -> list[Path]:
    """Temp files a killed run of ``writer`` left (atomic_write's ".<target>.<random>.tmp")."""
    esc = re.escape(writer)
    stray = re.compile(rf"\.(part-{esc}-\d{{6,}}\.parquet|parts-{esc}\.jsonl?)\..+\.tmp")
    return sorted(f for f in path.iterdir() if stray.fullmatch(f.name))


def unjournaled(path: Path, writer: str, journaled: set[str]) -> list[Path]:
    """The writer's part files in the folder that its journal does not list (``journaled``)."""
    pattern = journal.part_pattern(writer)
    return sorted(f for f in path.iterdir() if pattern.fullmatch(f.name) and f.name not in journaled)


def adopt(path: Path, kind: Kind, file: Path) -> journal.Entry | None:
    """The journal entry of an unjournaled part that reads back whole, else quarantines it.

    A part renamed into place by a process that died before its journal line was fsynced
    before its rename, so if it parses (with its Parquet page checksums) it is worth keeping.
    """
    try:
        table, digest = read_part(file, kind)
    except DamagedPart as err:
        log.warning("setting aside unjournaled part %s: %s", file, err.reason)
        quarantine(path, file)
        return None
    log.info("adopting unjournaled part %s (%d rows)", file, table.num_rows)
    return journal.Entry(file.name, table.num_rows, digest)


def next_seq(path: Path, writer: str) -> int:
    """One past the highest part number of ``writer`` in the folder, its journal or quarantine/:
    a number is never reused, not even a quarantined one."""
    esc = re.escape(writer)
    taken = re.compile(rf"part-{esc}-(\d{{6,}})\.parquet(\.\d+)?")
    names = [f.name for f in path.iterdir()]
    names += [e.file for e in journal.read(path, writer)[0]]
    if (path / "quarantine").is_dir():
        names += [f.name for f in (path / "quarantine").iterdir()]
    return max([0, *(int(m.group(1)) for n in names if (m := taken.fullmatch(n)))]) + 1


def remove_if_empty(path: Path, writer: str) -> None:
    """Removes a teacher folder that holds no judgements (nothing but its manifest, lock files and
    empty journals: what a failed first import into a new store leaves), unless a writer other
    than ``writer`` (the caller's, held) is live in it."""
    lock_name = re.compile(r"\.writer-(.+)\.lock")
    names = [p.name for p in path.iterdir()]
    others = [m.group(1) for n in names if (m := lock_name.fullmatch(n)) and m.group(1) != writer]
    rest = [n for n in names if n != "manifest.json" and not lock_name.fullmatch(n)]
    if any(not re.fullmatch(r"parts-.+\.jsonl?", n) for n in rest):
        return
    if any(journal.read(path, w)[0] for w in journal.writers(path)):
        return
    fds = [lock(path, w, must=False) for w in others]
    try:
        if None not in fds:
            shutil.rmtree(path)
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)


def journaled_parts(path: Path, kind: Kind) -> Iterator[tuple[str, pa.Table | DamagedPart]]:
    """``(writer, rows or what is wrong)`` of every journaled part, checksums checked, in
    (writer, sequence) order."""
    for writer in journal.writers(path):
        for entry in journal.read(path, writer)[0]:
            try:
                yield writer, read_part(path / entry.file, kind, entry.sha256, entry.rows)[0]
            except DamagedPart as e:
                yield writer, e


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


def check_parts(path: Path, kind: Kind) -> int:
    """Re-reads every journaled part of the teacher folder ``path``; sets nothing aside.

    Returns:
        The number of parts checked.

    Raises:
        RkdError: a part is missing, truncated or altered; the message names every such file.
    """
    read = [got for _, got in journaled_parts(path, kind)]
    bad = [str(got) for got in read if isinstance(got, DamagedPart)]
    if bad:
        raise RkdError(
            f"score store {path} is damaged: {', '.join(bad)}; run `rkd scores verify "
            f"{path.parent}` to set those parts aside, so their pairs are scored again"
        )
    return len(read)
