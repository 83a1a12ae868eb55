"""What every index folder shares: ``manifest.json`` (written last), ``doc_ids.json``, and the
checksums of both files in the manifest, checked on every load.

A kind writes its own data (``index.faiss``, ``docs.npz``, or a folder of files) through
:func:`write_index_folder` and reads it after :func:`read_index_folder`; both record and check
the data's checksums, so a new kind gets them without a line of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from retrieval_kd.artifacts import file_checksums, replacing, verify_checksums
from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.io import atomic_write, atomic_write_json, read_json

FORMAT = "rkd-index/1"
_REBUILD = "the index is damaged: rebuild it with `rkd index`"


def read_index_folder(path: Path, kind: str, data_file: str) -> tuple[dict[str, Any], list[str]]:
    """The manifest and doc ids of an index folder of ``kind``, checked; ``data_file`` (the
    kind's own file or folder: ``index.faiss``, ``docs.npz``) must exist, and every file the
    manifest records a checksum of must match it (folders written before rkd recorded them
    are read unchecked).

    Raises:
        DataError: naming the file that is missing, damaged or holds something else.
    """
    manifest = read_json(path / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{path / 'manifest.json'}: format {found!r}, expected {FORMAT!r}")
    if manifest.get("kind") != kind:
        raise DataError(f"{path / 'manifest.json'}: kind {manifest.get('kind')!r}, expected {kind!r}")
    if not (path / data_file).exists():
        raise DataError(f"{path / data_file}: no such file")
    if "files" in manifest:
        verify_checksums(path, manifest["files"], path / "manifest.json", _REBUILD)
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
    ``manifest.json`` last, each atomically, so a folder with a manifest is whole. The manifest
    records the size and xxh3-64 hash of every file in the folder (sub-folders included; not the
    manifest, nor hidden files such as a stage marker), so files a kind wrote into ``path``
    before calling this (a ``lucene/`` folder) are checked on load too.

    An index saved over a complete older one (a folder with a manifest), or to a new path, is
    written beside it and swapped in whole (:func:`~retrieval_kd.artifacts.replacing`), so a
    killed save leaves the old index; a folder without a manifest is written in place.
    """
    with replacing(path, lambda p: (p / "manifest.json").exists()) as folder:
        atomic_write(folder / data_file, write)
        atomic_write_json(folder / "doc_ids.json", doc_ids)
        names = sorted(
            p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != "manifest.json"
        )
        atomic_write_json(folder / "manifest.json", {**manifest, "files": file_checksums(folder, names)})


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
