from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from retrieval_kd.data import load_dataset
from retrieval_kd.data.candidates import Candidate, Candidates
from retrieval_kd.scores.scoring import score_pairs
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import FakeTeacher


def overlap(query: str, doc: str) -> float:
    return float(len(set(query.split()) & set(doc.split())))


@pytest.fixture
def overlap_scored(tiny_beir: Path) -> Callable[[Path, int], Any]:
    """``make(folder, negatives)``: candidates for the tiny train split (each query's positive
    and ``negatives`` neighbouring documents) in ``folder/cands``, scored by word overlap into
    ``folder/store``; returns the dataset."""

    def make(folder: Path, negatives: int) -> Any:
        ds = load_dataset(f"{tiny_beir}:train")
        ids = sorted(ds.docs)
        items = []
        for i, qid in enumerate(sorted(ds.queries)):
            pos = next(iter(ds.qrels[qid]))
            window = ids[i * 3 : i * 3 + negatives + 2]
            items.append(Candidate(qid, (pos,), tuple(d for d in window if d != pos)[:negatives]))
        Candidates(items).save(folder / "cands")
        teacher = FakeTeacher(overlap)
        with ScoreStore.open(folder / "store", teacher.fingerprint(), teacher.spec()) as store:
            score_pairs(store, teacher, Candidates(items).pairs(), ds.queries, ds.doc_texts())
        return ds

    return make


@pytest.fixture
def train_recipe(tiny_beir: Path, tiny_model: Path) -> Callable[..., Path]:
    """``write(path, **train)``: a recipe training the tiny student on the tiny train split with
    the ``[train]`` settings given (TOML values written with ``json.dumps``)."""

    def write(path: Path, **train: object) -> Path:
        lines = [
            f"[data]\ntrain = {json.dumps(f'{tiny_beir}:train')}",
            f"[student]\nmodel = {json.dumps(str(tiny_model))}",
        ]
        lines.append("[train]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in train.items()))
        path.write_text("\n".join(lines) + "\n")
        return path

    return write
