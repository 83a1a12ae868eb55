"""What the stage modules share: content hashes of their inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_kd.artifacts import stage_fingerprint
from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_file, hash_json, hash_model_dir


def model_hash(model: str | Path) -> str:
    """Content hash of a model folder or hub id (its resolved folder): weights and configs.

    Cheap on a rerun: hash_model_dir caches per-file hashes by size and mtime.
    """
    from retrieval_kd.models import resolve_model

    try:
        folder = resolve_model(str(model))
    except RkdError:
        # Not a folder rkd can find (a plugin teacher's own model name, say): the component that
        # loads it reports a missing model; its name is all there is to hash here.
        return hash_json({"name": str(model)})
    return hash_model_dir(Path(folder))


def student_source(model: str) -> str:
    """What an index records as its query encoder (``student_path``), for the eval stage to reopen:
    the model's folder, or the name itself for a student that needs no folder (``bm25``; it was
    just opened from that name)."""
    from retrieval_kd.models import resolve_model

    path = Path(model)
    if path.exists():
        return str(path.resolve())
    try:
        return resolve_model(model)
    except RkdError:
        return model


def adopt(candidates: tuple[Path, ...], fingerprint: str, out: Path) -> Path | None:
    """Takes over the first of ``candidates`` that already is this stage's output (same
    fingerprint) into ``out``, hard-linked (same bytes, no copy; stage outputs are never edited
    in place, a rerun replaces them whole), and returns it; None when none matches."""
    import os
    import shutil

    from retrieval_kd.artifacts import building

    for folder in candidates:
        if Path(folder).resolve() != Path(out).resolve() and stage_fingerprint(folder) == fingerprint:
            with building(out) as tmp:
                shutil.copytree(folder, tmp, copy_function=os.link, dirs_exist_ok=True)
            return Path(folder)
    return None


def input_fingerprint(folder: Path, what: str) -> str:
    """The fingerprint an upstream stage recorded in ``folder``; for a folder rkd did not write
    (candidates made by hand, say) the hash of its files' bytes."""
    folder = Path(folder)
    fp = stage_fingerprint(folder) if folder.is_dir() else None
    if fp is not None:
        return fp
    if folder.is_file():
        return hash_file(folder)[:16]
    if not folder.is_dir():
        raise RkdError(f"{what} {folder}: no such file or folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hash_json([(p.relative_to(folder).as_posix(), hash_file(p)) for p in files])


@dataclass(frozen=True)
class StageResult:
    """What a stage produced.

    Attributes:
        stage: "mine", "score", "init", "train", "index" or "eval".
        path: its output folder (a score store root for "score").
        fingerprint: identifies the output; downstream stages hash it into theirs.
        ran: False when the output was already up to date and nothing was computed.
        summary: one line for people.
        extra: stage-specific values (the teacher fingerprint, the metrics, the loss log).
    """

    stage: str
    path: Path
    fingerprint: str
    ran: bool
    summary: str
    extra: dict[str, Any] = field(default_factory=dict)

    def message(self, label: str | None = None) -> str:
        """``"<label>: <summary>"``, or ``"<label>: up to date (<path>)"`` when it did not run."""
        label = label or self.stage
        return f"{label}: {self.summary}" if self.ran else f"{label}: up to date ({self.path})"
