"""Fixtures of the student tests: a seeded tiny masked LM for the SPLADE family."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest


def tiny_mlm_folder(path: Path, texts: list[str], seed: int = 0, hidden: int = 32) -> Path:
    """A seeded 2-layer BertForMaskedLM whose vocabulary holds every word of ``texts``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast  # type: ignore[attr-defined]

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertForMaskedLM(config).save_pretrained(path)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)
    return path


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
