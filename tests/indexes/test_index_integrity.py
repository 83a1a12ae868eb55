"""Index folders: a flipped byte anywhere in a saved index is refused on load with one line naming
the file; a save killed over an older index leaves the older one whole, and the next save
cleans up after it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.artifacts import clean_stale
from retrieval_kd.errors import DataError
from retrieval_kd.indexes import load_index
from retrieval_kd.indexes.faiss_index import FaissIndex
from retrieval_kd.indexes.sparse_index import SparseIndex
from retrieval_kd.protocols import Index

QUERIES = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
QIDS = ["a", "b", "c", "d"]


def faiss_index(n: int) -> FaissIndex:
    index = FaissIndex(dim=8)
    index.add(
        [f"d{i}" for i in range(n)], np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
    )
    return index


def sparse_index(n: int) -> SparseIndex:
    rng = np.random.default_rng(n)
    index = SparseIndex()
    index.add([f"d{i}" for i in range(n)], np.where(rng.random((n, 8)) < 0.4, rng.random((n, 8)), 0.0))
    return index


@pytest.mark.parametrize(("build", "data_file"), [(faiss_index, "index.faiss"), (sparse_index, "docs.npz")])
def test_flipped_bytes_of_the_data_and_doc_ids_are_refused(
    tmp_path: Path, build: type[Index], data_file: str
) -> None:
    index = build(40)  # type: ignore[call-arg]
    index.save(tmp_path / "idx")
    before = load_index(tmp_path / "idx").search(QIDS, QUERIES, k=5)
    for name in (data_file, "doc_ids.json"):
        file = tmp_path / "idx" / name
        good = file.read_bytes()
        for at in range(0, len(good), max(1, len(good) // 150)):  # ~150 flips spread over the file
            damaged = bytearray(good)
            damaged[at] ^= 0x01
            file.write_bytes(bytes(damaged))
            with pytest.raises(
                DataError, match=rf"^{tmp_path / 'idx' / name}: damaged \(xxh3-64 [0-9a-f]{{16}}, "
            ):
                load_index(tmp_path / "idx")
        file.write_bytes(good[: len(good) // 2])
        with pytest.raises(
            DataError, match=rf"{name}: damaged \({len(good) // 2} bytes, {len(good)} recorded"
        ):
            load_index(tmp_path / "idx")
        file.write_bytes(good)
    (tmp_path / "idx" / data_file).unlink()
    with pytest.raises(DataError, match=rf"{data_file}: no such file"):
        load_index(tmp_path / "idx")
    index.save(tmp_path / "idx")
    assert load_index(tmp_path / "idx").search(QIDS, QUERIES, k=5) == before


def test_a_manifest_naming_files_outside_its_folder_is_refused(tmp_path: Path) -> None:
    faiss_index(10).save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    manifest["files"]["../outside"] = {"bytes": 1, "xxh3_64": "0" * 16}
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"'files' entry '\.\./outside'"):
        load_index(tmp_path / "idx")


# The child saves a 30-document index over the 20-document one, and is killed at a point of the
# save: by itself (SIGKILL, no cleanup runs), so the point is exact.
KILLED_SAVE = """
import os, signal, sys
from pathlib import Path
import numpy as np
from retrieval_kd.indexes import _folder
from retrieval_kd.indexes.faiss_index import FaissIndex
point = sys.argv[2]
if point == "before-manifest":  # every data file written into the partial folder
    real_json = _folder.atomic_write_json
    def write_json(path, obj):
        if path.name == "manifest.json":
            os.kill(os.getpid(), signal.SIGKILL)
        real_json(path, obj)
    _folder.atomic_write_json = write_json
else:  # the old folder renamed aside, the new one not yet in its place
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith(".idx.old"):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
index = FaissIndex(dim=8)
index.add([f"d{i}" for i in range(30)], np.random.default_rng(30).standard_normal((30, 8)).astype(np.float32))
index.save(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("point", ["before-manifest", "between-renames"])
def test_a_save_killed_over_an_older_index_leaves_it_whole(tmp_path: Path, point: str) -> None:
    target = tmp_path / "idx"
    faiss_index(20).save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    results = load_index(target).search(QIDS, QUERIES, k=5)

    child = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(target), point])
    assert child.returncode == -signal.SIGKILL
    strays = {p.name for p in tmp_path.iterdir() if p.name != "idx"}
    old = {".idx.old"} if point == "between-renames" else set()
    assert strays == {f".idx.partial-{child_pid(tmp_path)}"} | old
    if point == "between-renames":
        assert not target.exists()  # the next run puts the old one back before anything else
        clean_stale(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert load_index(target).search(QIDS, QUERIES, k=5) == results

    faiss_index(30).save(target)  # the next save cleans the killed one's temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert len(load_index(target)) == 30


def child_pid(folder: Path) -> str:
    return next(p.name.rsplit("-", 1)[1] for p in folder.iterdir() if ".partial-" in p.name)
