"""What every index folder shares: ``manifest.json`` (written last) and ``doc_ids.json``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.io import atomic_write, atomic_write_json, read_json

FORMAT = "rkd-index/1"


def read_index_folder(path: Path, kind: str, data_file: str) -> tuple[dict[str, Any], list[str]]:
    """The manifest and doc ids of an index folder of ``kind``, checked; ``data_file`` (the
    kind's own file: ``index.faiss``, ``docs.npz``) must exist.

    Raises:
        DataError: naming the file that is missing or holds something else.
    """
    manifest = read_json(path / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{path / 'manifest.json'}: format {found!r}, expected {FORMAT!r}")
    if manifest.get("kind") != kind:
        raise DataError(f"{path / 'manifest.json'}: kind {manifest.get('kind')!r}, expected {kind!r}")
    if not (path / data_file).is_file():
        raise DataError(f"{path / data_file}: no such file")
    doc_ids = read_json(path / "doc_ids.json")
    if not isinstance(doc_ids, list):
        raise DataError(f"{path / 'doc_ids.json'}: expected a JSON list of document ids")
    return manifest, [str(d) for d in doc_ids]


def write_index_folder(
    path: Path,
    data_file: str,
    write: Callable[[IO[bytes]], object],
    doc_ids: list[str],
    manifest: dict[str, Any],
) -> None:
    """Writes an index folder: the kind's ``data_file`` (through ``write``), ``doc_ids.json``, then
    ``manifest.json`` last, each atomically, so a folder with a manifest is whole."""
    path.mkdir(parents=True, exist_ok=True)
    # An old manifest beside a half-written new index would claim a complete folder.
    (path / "manifest.json").unlink(missing_ok=True)
    atomic_write(path / data_file, write)
    atomic_write_json(path / "doc_ids.json", doc_ids)
    atomic_write_json(path / "manifest.json", manifest)


def check_encoder(manifest: dict[str, Any], path: Path | None, student_fingerprint: str) -> None:
    """Refuses queries from another student than the one whose fingerprint ``manifest`` records.

    Raises:
        RkdError: naming the index folder and both fingerprints.
    """
    built_with = manifest.get("student_fingerprint") or ""
    if built_with and student_fingerprint != built_with:
        where = path if path is not None else "(in memory)"
        raise RkdError(
            f"index {where} was built with student {built_with}; these queries come from "
            f"{student_fingerprint or '(no fingerprint)'}: encode queries with the same student, "
            "or rebuild the index with `rkd index`"
        )
