"""Content hashes: canonical JSON, and model folders hashed once per unchanged file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from retrieval_kd import fingerprint
from retrieval_kd.fingerprint import hash_cache_path, hash_json, hash_model_dir

HOUR_NS = 3600 * 10**9


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RKD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files whose bytes hash_file read."""
    seen: list[str] = []
    real = fingerprint.hash_file

    def counting(path: Path, chunk: int = 1 << 20) -> str:
        seen.append(path.name)
        return real(path, chunk)

    monkeypatch.setattr(fingerprint, "hash_file", counting)
    return seen


def age(path: Path, ns: int = HOUR_NS) -> None:
    """Moves the file's mtime an hour back: older than the racy window, as real weights are."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - ns))


def model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights" * 1000)
    (folder / "config.json").write_text('{"hidden": 8}')
    (folder / "rkd.json").write_text("{}")  # provenance: not part of the hash
    (folder / "README.md").write_text("not hashed")
    for p in folder.iterdir():
        age(p)
    return folder


def test_hash_json_is_canonical() -> None:
    assert hash_json({"b": 1, "a": [1, 2]}) == hash_json({"a": [1, 2], "b": 1})
    assert hash_json({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()[:16]


def test_cache_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RKD_CACHE_DIR", str(tmp_path / "c"))
    assert hash_cache_path() == tmp_path / "c" / "file-hashes.json"
    monkeypatch.delenv("RKD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert hash_cache_path() == tmp_path / "x" / "rkd" / "file-hashes.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hash_cache_path() == Path.home() / ".cache" / "rkd" / "file-hashes.json"


def test_value_is_the_uncached_one(tmp_path: Path, cache_dir: Path) -> None:
    folder = model(tmp_path / "m")
    h = hashlib.sha256()
    for rel in ("config.json", "model.safetensors"):
        h.update(rel.encode())
        h.update(hashlib.sha256((folder / rel).read_bytes()).hexdigest().encode())
    assert hash_model_dir(folder) == h.hexdigest()[:16]
    assert hash_model_dir(folder) == hash_model_dir(folder, cache=False) == h.hexdigest()[:16]


def test_second_call_reads_nothing(tmp_path: Path, cache_dir: Path, calls: list[str]) -> None:
    folder = model(tmp_path / "m")
    first = hash_model_dir(folder)
    assert sorted(calls) == ["config.json", "model.safetensors"]
    calls.clear()
    assert hash_model_dir(folder) == first
    assert calls == []
    entries = json.loads((cache_dir / "file-hashes.json").read_text())["files"]
    assert sorted(entries) == [
        str(folder.resolve() / "config.json"),
        str(folder.resolve() / "model.safetensors"),
    ]
    st = (folder / "model.safetensors").stat()
    assert entries[str(folder.resolve() / "model.safetensors")] == {
        "size": 7000,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
        "sha256": hashlib.sha256(b"weights" * 1000).hexdigest(),
    }


def test_touched_or_changed_file_is_rehashed(tmp_path: Path, cache_dir: Path, calls: list[str]) -> None:
    folder = model(tmp_path / "m")
    first = hash_model_dir(folder)
    calls.clear()
    age(folder / "model.safetensors", -60 * 10**9)  # touched: same bytes, new mtime
    assert hash_model_dir(folder) == first
    assert calls == ["model.safetensors"]
    calls.clear()
    weights = folder / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    replacement = tmp_path / "new.safetensors"
    replacement.write_bytes(b"WEIGHTS" * 1000)
    os.replace(replacement, weights)  # same size, same mtime: the new inode gives it away
    os.utime(weights, ns=(mtime, mtime))
    changed = hash_model_dir(folder)
    assert calls == ["model.safetensors"]
    assert changed != first
    assert changed == hash_model_dir(folder, cache=False)


def test_fresh_files_are_not_remembered(tmp_path: Path, cache_dir: Path, calls: list[str]) -> None:
    folder = model(tmp_path / "m")
    (folder / "config.json").write_text('{"hidden": 9}')  # just written: inside the racy window
    hash_model_dir(folder)
    calls.clear()
    hash_model_dir(folder)
    assert calls == ["config.json"]


def test_corrupt_cache_is_rebuilt(tmp_path: Path, cache_dir: Path, calls: list[str]) -> None:
    folder = model(tmp_path / "m")
    first = hash_model_dir(folder)
    for junk in ("{not json", "[]", '{"version": 1, "files": []}', '{"version": 99, "files": {}}'):
        (cache_dir / "file-hashes.json").write_text(junk)
        calls.clear()
        assert hash_model_dir(folder) == first
        assert sorted(calls) == ["config.json", "model.safetensors"]
        calls.clear()
        assert hash_model_dir(folder) == first
        assert calls == []


def test_entries_of_deleted_files_are_dropped(tmp_path: Path, cache_dir: Path) -> None:
    a, b = model(tmp_path / "a"), tmp_path / "b"
    hash_model_dir(a)
    b.mkdir()
    (b / "model.bin").write_bytes(b"x")
    age(b / "model.bin")
    (a / "config.json").unlink()
    hash_model_dir(b)
    entries = json.loads((cache_dir / "file-hashes.json").read_text())["files"]
    assert sorted(entries) == [str(a.resolve() / "model.safetensors"), str(b.resolve() / "model.bin")]


def test_unwritable_cache_is_only_slower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("RKD_CACHE_DIR", str(blocker / "sub"))  # a folder inside a file
    folder = model(tmp_path / "m")
    assert hash_model_dir(folder) == hash_model_dir(folder, cache=False)
