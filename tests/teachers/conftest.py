from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _tiny_lm_master(tmp_path_factory: pytest.TempPathFactory, tiny_beir: Path) -> Path:
    from retrieval_kd.teachers.llm_pairwise import TEMPLATE as PAIRWISE
    from retrieval_kd.teachers.llm_pointwise import TEMPLATE as POINTWISE
    from retrieval_kd.testing import tiny_causal_lm_folder

    texts = [POINTWISE, PAIRWISE, "Final answer (yes or no):"]
    for name in ("corpus.jsonl", "queries.jsonl"):
        for line in (tiny_beir / name).read_text().splitlines():
            row = json.loads(line)
            texts += [row["text"], row.get("title", "")]
    return tiny_causal_lm_folder(tmp_path_factory.mktemp("lm") / "lm", texts, seed=0)


@pytest.fixture
def tiny_lm(_tiny_lm_master: Path, tmp_path: Path) -> Path:
    """A seeded 2-layer Llama with a chat template, built once, copied per test."""
    dst = tmp_path / "lm"
    shutil.copytree(_tiny_lm_master, dst)
    return dst
