"""The public Python API: lazy imports, Retriever, encoder/index mismatch refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import retrieval_kd
from retrieval_kd import Retriever, load_student
from retrieval_kd.data import load_dataset
from retrieval_kd.errors import RkdError
from retrieval_kd.indexing import build_index
from retrieval_kd.students.dense import DenseStudent

# Each public name and the module that documents it (its home, where the docs point).
PUBLIC = {
    "Retriever": "retrieval_kd.api",
    "load_student": "retrieval_kd.students",
    "load_index": "retrieval_kd.indexes",
    "load_dataset": "retrieval_kd.data",
}


def test_all_is_true() -> None:
    """``__all__`` is exactly the public API, and every name is the object at its home."""
    import importlib
    from importlib.metadata import version

    assert sorted(retrieval_kd.__all__) == sorted([*PUBLIC, "__version__"])
    assert len(retrieval_kd.__all__) == len(set(retrieval_kd.__all__))
    for name, home in PUBLIC.items():
        obj = getattr(retrieval_kd, name)
        assert obj is getattr(importlib.import_module(home), name), name
        assert obj.__module__ == home, name  # defined there, not re-exported from elsewhere
        assert callable(obj)
    assert retrieval_kd.__version__ == version("retrieval-kd")
    namespace: dict[str, object] = {}
    exec("from retrieval_kd import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(retrieval_kd.__all__)
    with pytest.raises(AttributeError, match="module 'retrieval_kd' has no attribute 'nope'"):
        _ = retrieval_kd.nope  # type: ignore[attr-defined]


def test_import_is_light() -> None:
    code = (
        "import sys, retrieval_kd; print(sorted(m for m in ('torch', 'faiss', 'ranx') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_retriever_matches_brute_force_and_refuses_other_encoder(
    tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    ds = load_dataset(str(tiny_beir))
    student = DenseStudent.from_pretrained(str(tiny_model), device="cpu")
    student.save(tmp_path / "s")
    index = build_index(student, ds)
    index.manifest["student_path"] = str(tmp_path / "s")
    index.save(tmp_path / "ix")
    query = "why does iron rust"
    hits = Retriever(str(tmp_path / "s"), str(tmp_path / "ix")).search({"r": query}, k=3)["r"]
    doc_ids = list(ds.docs)
    sims = (
        student.encode_documents([ds.docs[d].full_text() for d in doc_ids])
        @ student.encode_queries([query])[0]
    )
    top = [doc_ids[i] for i in np.argsort(-sims)[:3]]
    assert list(hits) == top
    assert list(hits.values()) == pytest.approx(sorted(sims, reverse=True)[:3], abs=1e-5)
    other = load_student(tmp_path / "s")
    other.model[0].auto_model.encoder.layer = other.model[0].auto_model.encoder.layer[:1]
    other.weights_changed()
    with pytest.raises(RkdError, match=r"was built with student .*: encode queries with the same student"):
        Retriever(other, str(tmp_path / "ix"))


def test_fake_encoder_meets_the_encoder_role_and_retrieves(tiny_beir: Path) -> None:
    from retrieval_kd.indexing import build_index
    from retrieval_kd.protocols import Encoder
    from retrieval_kd.testing import FakeEncoder

    ds = load_dataset(f"{tiny_beir}:test")
    enc = FakeEncoder(dim=256)
    assert isinstance(enc, Encoder)
    index = build_index(enc, ds)
    assert index.kind == "faiss" and index.manifest["count"] == 32
    qid = next(iter(ds.queries))
    run = Retriever(enc, index).search({qid: ds.queries[qid]}, k=32)
    docs = ds.doc_texts()
    q = enc.encode_queries([ds.queries[qid]])[0]
    expected = {d: float(q @ enc.encode_documents([t])[0]) for d, t in docs.items()}  # brute force
    assert len(run[qid]) == 32
    assert max(abs(run[qid][d] - expected[d]) for d in run[qid]) < 1e-5
    assert list(run[qid].values()) == sorted(run[qid].values(), reverse=True)
