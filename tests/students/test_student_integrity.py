"""Saved students: a flipped weight byte is refused on load (and by `rkd index`) with one line
naming the file; a save killed over an older student leaves the older one whole."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.errors import DataError
from retrieval_kd.students import build_student, load_student

TEXTS = ["a protein folds", "the cell divides"]


def flip_middle_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))


def test_a_flipped_weight_byte_is_refused(tmp_path: Path, tiny_model: Path, tiny_beir: Path) -> None:
    saved = tmp_path / "student"
    student = build_student("dense", str(tiny_model))
    student.save(saved)
    meta = json.loads((saved / "rkd.json").read_text())
    assert meta["files"]["model.safetensors"]["bytes"] == (saved / "model.safetensors").stat().st_size
    assert {"modules.json", "config.json", "tokenizer.json", "1_Pooling/config.json"} <= set(meta["files"])
    flip_middle_byte(saved / "model.safetensors")

    damaged = rf"^{saved / 'model.safetensors'}: damaged \(xxh3-64 [0-9a-f]{{16}}, "
    with pytest.raises(DataError, match=damaged):
        load_student(saved)
    result = CliRunner().invoke(
        app, ["index", "--model", str(saved), "--dataset", str(tiny_beir), "--out", str(tmp_path / "idx")]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {saved / 'model.safetensors'}: damaged (xxh3-64 ")
    assert "save or train it again" in result.output and not (tmp_path / "idx").exists()

    # Why rkd records checksums: safetensors checks its header only, so without them the
    # damaged weights load without a word, under another fingerprint than the one recorded.
    del meta["files"]
    (saved / "rkd.json").write_text(json.dumps(meta))
    assert load_student(saved).fingerprint() != meta["student_fingerprint"]


# The child saves the full 2-layer student over the 1-layer one, and kills itself (SIGKILL) once
# the new model files are written, just before rkd.json: the point the issue found a mix at.
KILLED_SAVE = """
import os, signal, sys
from pathlib import Path
from sentence_transformers import SentenceTransformer
from retrieval_kd.students import build_student
model_save = SentenceTransformer.save
SentenceTransformer.save = lambda self, *args, **kwargs: (
    model_save(self, *args, **kwargs), os.kill(os.getpid(), signal.SIGKILL)
)
build_student("dense", sys.argv[1]).save(Path(sys.argv[2]))
"""


def test_a_save_killed_over_an_older_student_leaves_it_whole(tmp_path: Path, tiny_model: Path) -> None:
    target = tmp_path / "student"
    old = build_student("dense", str(tiny_model), num_layers=1)
    old.save(target)
    before = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    vectors = old.encode_documents(TEXTS)

    child = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(tiny_model), str(target)])
    assert child.returncode == -signal.SIGKILL
    assert [p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith(".")] == [
        ".student.partial"
    ]
    assert {
        p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()
    } == before
    reloaded = load_student(target)
    assert (
        reloaded.fingerprint()
        == old.fingerprint()
        == json.loads((target / "rkd.json").read_text())["student_fingerprint"]
    )
    assert np.array_equal(reloaded.encode_documents(TEXTS), vectors)

    new = build_student("dense", str(tiny_model))
    new.save(target)  # the next save removes the killed one's partial folder
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "tiny") == ["student"]
    assert load_student(target).fingerprint() == new.fingerprint() != old.fingerprint()
