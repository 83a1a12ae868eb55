"""Stable content hashes: of JSON-able settings and of model weight files.

Hashing a multi-GB checkpoint takes minutes, so :func:`hash_model_dir` remembers each file's
SHA-256 in a small JSON cache keyed by the file's absolute path, size, modification time and
inode (``$RKD_CACHE_DIR/file-hashes.json``, default ``~/.cache/rkd/file-hashes.json``): an
unchanged file is hashed once per machine, a touched or rewritten one again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def hash_json(obj: object, length: int = 16) -> str:
    """SHA-256 of the canonical JSON form (sorted keys), shortened.

    Example:
        >>> hash_json({"b": 1, "a": [1, 2]}) == hash_json({"a": [1, 2], "b": 1})
        True
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    """Full SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
CACHE_ENV = "RKD_CACHE_DIR"
_CACHE_VERSION = 1
RACY_NS = 2_000_000_000  # files modified more recently than this are hashed but not remembered


def hash_cache_path() -> Path:
    """Where per-file hashes are remembered: ``$RKD_CACHE_DIR/file-hashes.json``, else
    ``$XDG_CACHE_HOME/rkd/file-hashes.json`` (``~/.cache/rkd/...``)."""
    base = os.environ.get(CACHE_ENV)
    if base:
        return Path(base) / "file-hashes.json"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rkd" / "file-hashes.json"


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cache's entries; a missing, unreadable or corrupt cache is empty (it is rebuilt)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    files = data.get("files")
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, dict) and isinstance(v.get("sha256"), str)}


def _write_cache(path: Path, new: dict[str, dict[str, Any]]) -> None:
    """Merges ``new`` into the cache on disk (another process may have added entries since it
    was read), drops entries whose file is gone, and replaces the file atomically. A cache that
    cannot be written is only a lost speed-up."""
    from retrieval_kd.io import atomic_write_text

    files = {k: v for k, v in _read_cache(path).items() if os.path.exists(k)}
    files.update(new)
    text = json.dumps({"version": _CACHE_VERSION, "files": files}, sort_keys=True)
    try:
        atomic_write_text(path, text + "\n")
    except OSError as e:
        log.debug("could not write the file-hash cache %s: %s", path, e)


def _stat_key(path: Path) -> tuple[str, dict[str, int]]:
    real = path.resolve()  # hub snapshots are symlinks into blobs: key the blob
    st = real.stat()
    return str(real), {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def hash_files_cached(files: list[Path], cache: Path | None = None) -> list[str]:
    """:func:`hash_file` of each file, reusing the hash remembered for an unchanged file.

    Args:
        files: the files to hash.
        cache: the cache file; default :func:`hash_cache_path`.
    """
    cache = cache if cache is not None else hash_cache_path()
    known = _read_cache(cache)
    fresh: dict[str, dict[str, Any]] = {}
    out = []
    for file in files:
        key, stat = _stat_key(file)
        entry = known.get(key)
        if entry is not None and all(entry.get(k) == v for k, v in stat.items()):
            out.append(str(entry["sha256"]))
            continue
        digest = hash_file(file)
        # Remember only a file that was not rewritten while we read it, and not one modified in
        # the last seconds: on a file system with coarse timestamps a second write within the
        # same tick would keep the size and mtime and be taken for unchanged ("racy git").
        settled = time.time_ns() - stat["mtime_ns"] > RACY_NS
        if settled and _stat_key(file)[1] == stat:
            fresh[key] = {**stat, "sha256": digest}
        out.append(digest)
    if fresh:
        with contextlib.suppress(OSError):
            _write_cache(cache, fresh)
    return out


def hash_model_dir(path: Path, cache: bool = True) -> str:
    """Hash of every weight and config file under a model folder (names and bytes).

    Two folders with the same weights and configs get the same hash wherever they live, so a
    copied model keeps its fingerprint and a fine-tuned one gets a new one.

    Args:
        path: the model folder.
        cache: reuse the remembered hash of an unchanged file (see the module docstring);
            ``False`` reads every byte.
    """
    files: list[tuple[str, Path]] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if file.suffix in WEIGHT_SUFFIXES or file.suffix == ".json" or file.name == "vocab.txt":
            if file.name == "rkd.json" or rel.startswith("checkpoint"):
                continue
            files.append((rel, file))
    digests = hash_files_cached([f for _, f in files]) if cache else [hash_file(f) for _, f in files]
    h = hashlib.sha256()
    for (rel, _), digest in zip(files, digests, strict=True):
        h.update(rel.encode())
        h.update(digest.encode())
    return h.hexdigest()[:16]
