"""Pair inputs assembled from texts tokenized once equal the tokenizer's own, and the
cross-encoder teacher scores with them exactly what CrossEncoder.predict gives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.models import resolve_model
from retrieval_kd.teachers.pair_tokens import PairAssembler, budget_batches


@pytest.fixture(scope="module")
def minilm_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))


def test_assembled_pairs_equal_the_tokenizers(minilm_tokenizer, tiny_beir: Path) -> None:  # type: ignore[no-untyped-def]
    docs = [json.loads(line) for line in (tiny_beir / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line)["text"] for line in (tiny_beir / "queries.jsonl").read_text().splitlines()]
    long_query = " ".join(queries) * 3  # longer than the budget: the query is cut, not the passage
    pairs = [(q, d["title"] + " " + d["text"]) for q in queries for d in docs[:8]]
    pairs += [(long_query, "short passage"), ("short query", long_query), (long_query, long_query)]
    assembler = PairAssembler(minilm_tokenizer, max_length=48)
    assert assembler.template.prefix == [minilm_tokenizer.cls_token_id]
    assert assembler.template.middle == assembler.template.suffix == [minilm_tokenizer.sep_token_id]
    assert assembler.budget == 45
    # the tokenizer's own inputs, padded, in token-budget batches holding every pair once
    batches = assembler.batches(
        [q for q, _ in pairs], [p for _, p in pairs], tokens=200, max_pairs=8, pad_id=0
    )
    assert sorted(i for rows, *_ in batches for i in rows) == list(range(len(pairs)))
    for rows, ids, types, mask in batches:
        assert ids.shape == types.shape == mask.shape and ids.shape[0] == len(rows) <= 8
        assert ids.size <= 200 or len(rows) == 1
        for row, i in enumerate(rows):
            enc = minilm_tokenizer(*pairs[i], truncation="longest_first", max_length=48)
            n = len(enc["input_ids"])
            assert (
                ids[row, :n].tolist() == enc["input_ids"] and types[row, :n].tolist() == enc["token_type_ids"]
            )
            assert mask[row].tolist() == [1] * n + [0] * (ids.shape[1] - n)
            assert not ids[row, n:].any() and not types[row, n:].any()
    assert assembler.check([q for q, _ in pairs], [p for _, p in pairs])
    broken = PairAssembler(minilm_tokenizer, max_length=48)
    broken.template = dataclasses.replace(broken.template, middle=[])  # no [SEP] between the texts
    assert not broken.check([q for q, _ in pairs[:3]], [p for _, p in pairs[:3]])
    # each unique text was tokenized once
    assert len(assembler._cache) == len({t for pair in pairs for t in pair})


def test_budget_batches_hold_the_budget() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(5, 300, size=500)]
    batches = budget_batches(lengths, tokens=1024, max_pairs=64)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert len(batch) <= 64 and len(batch) * max(widths) <= 1024
    # sorted longest first, so few pad tokens: under 10% of the padded total here
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert 1 - sum(lengths) / padded < 0.10


def test_teacher_scores_equal_predict(tiny_model: Path, tmp_path: Path, tiny_beir: Path) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    from retrieval_kd.teachers.cross_encoder import CrossEncoderTeacher
    from retrieval_kd.testing import tiny_cross_encoder_folder

    folder = tiny_cross_encoder_folder(tmp_path / "ce", tiny_model)
    # a random head scores every pair alike (spread 3e-5): widen it so equality is a real test
    widened = CrossEncoder(str(folder), device="cpu")
    with torch.no_grad():
        for name, param in widened.named_parameters():
            if "classifier" in name:
                param.mul_(3000.0)
    widened.save(str(folder))
    docs = [json.loads(line) for line in (tiny_beir / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line)["text"] for line in (tiny_beir / "queries.jsonl").read_text().splitlines()]
    pairs = [(q, (d["title"] + " " + d["text"]) * (1 + i % 4)) for q in queries for i, d in enumerate(docs)]
    teacher = CrossEncoderTeacher(str(folder), batch_size=8, device="cpu")
    got = teacher.score([q for q, _ in pairs], [p for _, p in pairs])
    assert teacher._assembler is not None  # the assembled path ran
    plain = CrossEncoder(str(folder), device="cpu", activation_fn=torch.nn.Identity())
    want = plain.predict(pairs, batch_size=8, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    assert got.shape == (len(pairs),) and got.dtype == np.float32
    assert np.std(want) > 0.05  # the scores differ from pair to pair: the comparison means something
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    # widths padded to a multiple of 8 (for tensor cores): the masked columns change no score
    teacher.pad_to_multiple_of = 8
    widths = [
        ids.shape[1] for _, ids, _, _ in teacher._assembler.batches(*zip(*pairs, strict=True), 4096, 64, 0, 8)
    ]
    assert all(w % 8 == 0 for w in widths) and len(widths) > 1
    np.testing.assert_allclose(
        teacher.score([q for q, _ in pairs], [p for _, p in pairs]), want, rtol=0, atol=1e-4
    )
