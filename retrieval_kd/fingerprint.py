"""Stable content hashes: of JSON-able settings and of model weight files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


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


def hash_model_dir(path: Path) -> str:
    """Hash of every weight and config file under a model folder (names and bytes).

    Two folders with the same weights and configs get the same hash wherever they live, so a
    copied model keeps its fingerprint and a fine-tuned one gets a new one.
    """
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if file.suffix in WEIGHT_SUFFIXES or file.suffix == ".json" or file.name == "vocab.txt":
            if file.name == "rkd.json" or rel.startswith("checkpoint"):
                continue
            h.update(rel.encode())
            h.update(hash_file(file).encode())
    return h.hexdigest()[:16]
