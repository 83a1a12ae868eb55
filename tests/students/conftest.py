"""Fixtures of the student tests: a seeded tiny masked LM for the SPLADE family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrieval_kd.testing import tiny_mlm_folder


@pytest.fixture(scope="session")
def _mlm_master(tmp_path_factory: pytest.TempPathFactory, tiny_beir: Path) -> Path:
    texts = [
        json.loads(line)[field]
        for name, field in (("corpus.jsonl", "text"), ("queries.jsonl", "text"), ("corpus.jsonl", "title"))
        for line in (tiny_beir / name).read_text().splitlines()
    ]
    return tiny_mlm_folder(tmp_path_factory.mktemp("mlm") / "mlm", texts)


@pytest.fixture
def tiny_mlm(_mlm_master: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(_mlm_master, tmp_path / "mlm"))
