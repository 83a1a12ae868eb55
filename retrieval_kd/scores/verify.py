"""``rkd scores verify``: check a whole score store, and repair what a rescan can repair.

For every teacher folder under the root, and every writer in it (a journal, a lock file, a part
or a staging area names one), under that writer's lock:

- the manifest must read back and match the sha256 recorded in it (not repairable here: it
  holds the teacher's description, which nothing else records);
- an import interrupted before its commit is discarded, one interrupted during its commit
  finished (:func:`~retrieval_kd.scores.staging.settle_staging`);
- every journal line must parse and name one of the writer's parts in the folder: a damaged
  line, or one naming a file elsewhere, is dropped; a torn last line (a killed run) is cut;
- every journaled part must match its sha256 and row count: a missing part's entry is dropped,
  a damaged part is moved to ``quarantine/`` (never deleted) and its entry dropped, so its keys
  read as missing and the next ``rkd score-teacher`` scores them again;
- a part on disk that the journal does not list is journaled when it reads back whole (Parquet
  page checksums, columns of the store's kind), quarantined otherwise;
- temp files of killed writes are removed.

The journal is then replaced atomically by the entries kept. A writer held by a live process is
neither checked nor repaired (its parts may be mid-write): reported, and the store is not whole.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from retrieval_kd.errors import RkdError
from retrieval_kd.scores import folder, journal, staging
from retrieval_kd.scores.parts import KINDS, DamagedPart, Kind, read_part

_PART = re.compile(r"part-(.+)-\d{6,}\.parquet")
_LOCK = re.compile(r"\.writer-(.+)\.lock")
_STAGING = re.compile(r"\.staging-(.+)")
_RESCORE = "its keys read as missing; the next `rkd score-teacher` scores them again"


@dataclass(frozen=True)
class Finding:
    """One problem found in a teacher folder and what was done about it.

    Attributes:
        teacher: the teacher folder's name.
        file: the file (or ``file:line``) it concerns, relative to the teacher folder.
        problem: what is wrong.
        action: what was done, or would be done (dry run), or why nothing can be.
        fixed: the store no longer has this problem.
    """

    teacher: str
    file: str
    problem: str
    action: str
    fixed: bool


@dataclass
class Report:
    """What :func:`verify_store` checked and found."""

    root: Path
    dry_run: bool
    teachers: list[str] = field(default_factory=list)
    writers: int = 0
    parts: int = 0  # parts that read back whole
    rows: int = 0  # their rows
    findings: list[Finding] = field(default_factory=list)

    @property
    def whole(self) -> bool:
        """Every teacher folder is whole now (nothing found, or everything found repaired)."""
        return all(f.fixed for f in self.findings)


def verify_store(root: Path, *, repair: bool = True) -> Report:
    """Checks every teacher folder under ``root`` (or ``root`` itself, if it is one).

    Args:
        root: a score store root, or one teacher's folder.
        repair: repair what can be repaired; ``False`` only reports (``--dry-run``).

    Raises:
        RkdError: ``root`` is not a folder, or holds no teacher folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise RkdError(f"{root}: not a folder (expected a score store root)")
    if (root / "manifest.json").is_file():
        folders = [root]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and _looks_like_store(p))
    if not folders:
        raise RkdError(f"{root}: no teacher score store in it (no folder with a manifest.json or parts)")
    report = Report(root, dry_run=not repair)
    for path in folders:
        report.teachers.append(path.name)
        _Checker(path, repair, report).check()
    return report


def _looks_like_store(path: Path) -> bool:
    return (
        (path / "manifest.json").is_file()
        or any(path.glob("parts-*.json*"))
        or any(path.glob("part-*.parquet"))
    )


class _Checker:
    """Checks (and repairs) one teacher folder, adding what it finds to a report."""

    def __init__(self, path: Path, repair: bool, report: Report) -> None:
        self.path, self.repair, self.report = path, repair, report

    def found(self, file: str, problem: str, action: str, fixed: bool | None = None) -> None:
        """Records a problem; ``action`` is what a repair does ("would ..." on a dry run)."""
        if not self.repair and fixed is None:
            action = f"would be {action}" if not action.startswith("not ") else action
        fixed = self.repair if fixed is None else fixed
        self.report.findings.append(Finding(self.path.name, file, problem, action, fixed))

    def check(self) -> None:
        path = self.path
        try:
            kind = KINDS[folder.read_manifest(path, path.name)["kind"]]
        except RkdError as e:
            problem = str(e).replace(f"{path / 'manifest.json'}: ", "")
            self.found(
                "manifest.json",
                problem,
                "not repaired: restore it from a copy, or re-create the store",
                False,
            )
            return
        names = [p.name for p in path.iterdir()]
        writers = set(journal.writers(path))
        for pattern in (_PART, _LOCK, _STAGING):
            writers |= {m.group(1) for n in names if (m := pattern.fullmatch(n))}
        for writer in sorted(writers):
            self.report.writers += 1
            # A dry run creates no lock file: without one, no live process holds the writer.
            if self.repair or (path / f".writer-{writer}.lock").exists():
                fd = folder.lock(path, writer, must=False)
            else:
                fd = -1
            if fd is None:
                self.found(f"parts-{writer}.jsonl", f"writer {writer!r} is in use by a live process",
                           "not checked: run again when it has finished", False)  # fmt: skip
                continue
            try:
                self.writer(kind, writer)
            finally:
                if fd >= 0:
                    os.close(fd)

    def writer(self, kind: Kind, writer: str) -> None:
        path, repair = self.path, self.repair
        entries, torn_at, problems = journal.scan(path, writer)
        for problem in problems:
            where, _, what = problem.partition(": ")
            self.found(Path(where).name, what, "dropped")
        if torn_at is not None:
            self.found(journal.path(path, writer).name, "torn last line (a killed run)", "cut off")
        if repair and (problems or torn_at is not None):
            journal.rewrite(path, writer, entries)  # first: a commit to finish reads the journal
        aside = staging.staging_dir(path, writer)
        if aside.is_dir():
            if (aside / staging.COMMIT).is_file():
                self.found(aside.name + "/", "an import stopped during its commit", "finished")
            else:
                self.found(aside.name + "/", "an import stopped before its commit",
                           "discarded: none of it was stored")  # fmt: skip
            if repair:
                staging.settle_staging(path, writer)
                entries = journal.read(path, writer)[0]
        for temp in folder.stray_temps(path, writer):
            self.found(temp.name, "temp file of a killed write", "removed")
            if repair:
                temp.unlink()
        kept = [e for e in entries if self.part(kind, path / e.file, e)]
        adopted = []
        for file in folder.unjournaled(path, writer, {e.file for e in entries}):
            entry = self.part(kind, file, None)
            if entry is not None:
                adopted.append(entry)
        if repair and (adopted or len(kept) < len(entries)):
            journal.rewrite(path, writer, sorted(kept + adopted, key=lambda e: e.seq))

    def part(self, kind: Kind, file: Path, entry: journal.Entry | None) -> journal.Entry | None:
        """The part's journal entry when it reads back whole; otherwise records what is wrong,
        quarantines it (when there is a file) and returns None."""
        try:
            table, digest = read_part(file, kind, entry and entry.sha256, entry and entry.rows)
        except DamagedPart as e:
            if entry is None:
                self.found(file.name, f"not in the journal, and {e.reason}", "moved to quarantine/")
            elif e.reason == "missing":
                self.found(file.name, "missing", f"dropped from the journal: {_RESCORE}")
            else:
                self.found(
                    file.name, e.reason, f"moved to quarantine/ and dropped from the journal: {_RESCORE}"
                )
            if self.repair and e.reason != "missing":
                folder.quarantine(self.path, file)
            return None
        if entry is None:
            self.found(file.name, "on disk but not in the journal", "journaled: it reads back whole")
        self.report.parts += 1
        self.report.rows += table.num_rows
        return journal.Entry(file.name, table.num_rows, digest)
