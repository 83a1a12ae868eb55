"""Folders that appear only when complete, and the stage markers that let reruns skip work.

A stage writes its folder beside the target (``.<name>.partial-<pid>``), then swaps it into
place: a killed run leaves the old artifact intact, never a mix of two versions. Stray partial
folders of dead runs are removed the next time that target is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrieval_kd.io import atomic_write_json, fsync_dir, read_json

MARKER = ".rkd-stage.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> None:
    """Removes partial folders of ``target`` left by processes that no longer run."""
    parent = target.parent
    if not parent.is_dir():
        return
    for stray in parent.glob(f".{target.name}.partial-*"):
        pid = stray.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
            shutil.rmtree(stray, ignore_errors=True)
    old = parent / f".{target.name}.old"
    if old.exists() and target.exists():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():  # killed between the two renames below: the old one is all we have
        os.replace(old, target)


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """Yields a fresh folder to write; on success it replaces ``target`` whole.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> with building(root / "out") as tmp:
        ...     _ = (tmp / "a.txt").write_text("new")
        >>> (root / "out" / "a.txt").read_text()
        'new'
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, target)


def replace_dir(src: Path, target: Path) -> None:
    """Moves the finished folder ``src`` to ``target``, replacing what was there."""
    old = target.parent / f".{target.name}.old"
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(src, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def stage_fingerprint(folder: Path) -> str | None:
    """The fingerprint a stage recorded in ``folder``, or None when it never completed there."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    data = read_json(marker)
    fp = data.get("fingerprint") if isinstance(data, dict) else None
    return fp if isinstance(fp, str) else None


def mark(folder: Path, stage: str, fingerprint: str, **extra: Any) -> None:
    atomic_write_json(Path(folder) / MARKER, {"stage": stage, "fingerprint": fingerprint, **extra})


def marker(folder: Path) -> dict[str, Any]:
    data = read_json(Path(folder) / MARKER)
    return data if isinstance(data, dict) else {}
