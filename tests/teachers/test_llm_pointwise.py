"""The pointwise LLM teacher against a plain transformers forward pass on the tiny Llama."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.errors import ConfigError
from retrieval_kd.teachers import build_teacher
from retrieval_kd.teachers.llm_pointwise import TEMPLATE

QUERIES = ["which fruit is red", "how do engines burn fuel", "red fruit"]
PASSAGES = [
    "apples are a red fruit that grows on trees",
    "engines burn fuel",
    "the river flows to the sea past the old mill and the long bridge",
]


def direct(
    folder: Path, queries: list[str], passages: list[str], suffix: list[int] | None = None
) -> np.ndarray:
    """logit(yes) − logit(no) of one unpadded prompt at a time (optionally greedy reasoning)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    yes, no = tok.convert_tokens_to_ids(["yes", "no"])
    out = []
    for q, p in zip(queries, passages, strict=True):
        message = [{"role": "user", "content": TEMPLATE.format(query=q, passage=p)}]
        text = tok.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            if suffix is not None:
                gen = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)[
                    0, ids.shape[1] :
                ]
                kept = []
                for t in gen.tolist():
                    if t in (0, 3):  # pad, eos
                        break
                    kept.append(t)
                ids = torch.tensor([ids[0].tolist() + kept + suffix])
            logits = model(ids).logits[0, -1]
        out.append(float(logits[yes] - logits[no]))
    return np.array(out, dtype=np.float32)


def test_scores_are_the_yes_no_logit_difference(tiny_lm: Path) -> None:
    # batch_size 2 over 3 prompts of different lengths: length ordering and left padding
    teacher = build_teacher("llm-pointwise", str(tiny_lm), batch_size=2, device="cpu")
    got = teacher.score(QUERIES, PASSAGES)
    want = direct(tiny_lm, QUERIES, PASSAGES)
    assert got.dtype == np.float32 and got.shape == (3,)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.ptp(want) > 1e-3  # the pairs really score differently
    assert teacher.score(QUERIES[:1], PASSAGES[:1])[0] == pytest.approx(float(got[0]), abs=2e-5)


def test_batched_prompt_tokenization_equals_one_prompt_at_a_time(tiny_lm: Path) -> None:
    teacher = build_teacher("llm-pointwise", str(tiny_lm), batch_size=2, device="cpu")
    prompts = [*teacher.prompts(QUERIES, PASSAGES), "", "  a b  "]
    add = not teacher.llm.chat
    one_by_one = [teacher.llm.tokenizer.encode(p, add_special_tokens=add) for p in prompts]
    assert teacher.llm.encode(prompts) == one_by_one and teacher.llm.encode([]) == []
    assert len({len(ids) for ids in one_by_one}) > 1


def test_reasoning_mode_reads_the_answer_after_greedy_thought(tiny_lm: Path) -> None:
    teacher = build_teacher("llm-pointwise", str(tiny_lm), batch_size=2, device="cpu", reasoning_tokens=3)
    suffix = teacher.llm.tokenizer.encode(teacher.answer_prompt, add_special_tokens=False)
    np.testing.assert_allclose(
        teacher.score(QUERIES, PASSAGES), direct(tiny_lm, QUERIES, PASSAGES, suffix), atol=2e-5
    )
    assert teacher.fingerprint() != build_teacher("llm-pointwise", str(tiny_lm), device="cpu").fingerprint()


def test_answer_words_must_be_single_tokens(tiny_lm: Path) -> None:
    with pytest.raises(ConfigError, match=r"yes='yes please' is 2 tokens \['yes', '\[UNK\]'\]"):
        build_teacher("llm-pointwise", str(tiny_lm), yes="yes please")
    with pytest.raises(ConfigError, match=r"template: unknown field 'document'"):
        build_teacher("llm-pointwise", str(tiny_lm), template="{query} {document}")


def test_fingerprint_covers_template_and_answers_not_batching(tiny_lm: Path) -> None:
    base = build_teacher("llm-pointwise", str(tiny_lm), device="cpu", batch_size=2).fingerprint()
    assert base == build_teacher("llm-pointwise", str(tiny_lm), device="cpu", batch_size=7).fingerprint()
    assert base != build_teacher("llm-pointwise", str(tiny_lm), yes="no", no="yes").fingerprint()
    assert base != build_teacher("llm-pointwise", str(tiny_lm), template="{query}? {passage}").fingerprint()
    assert base != build_teacher("llm-pointwise", str(tiny_lm), max_length=4).fingerprint()


def test_weights_are_hashed_once_then_remembered(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import time

    from retrieval_kd import fingerprint

    for f in tiny_lm.iterdir():  # older than the racy window, so their hashes are remembered
        os.utime(f, (time.time() - 60, time.time() - 60))
    first = build_teacher("llm-pointwise", str(tiny_lm), device="cpu").fingerprint()
    read: list[Path] = []
    real = fingerprint.hash_file
    monkeypatch.setattr(fingerprint, "hash_file", lambda p, *a: read.append(p) or real(p, *a))
    assert build_teacher("llm-pointwise", str(tiny_lm), device="cpu").fingerprint() == first
    assert read == []  # no weight byte read again


def test_score_pairs_tokenizes_the_next_part_ahead_with_the_same_scores(
    tiny_lm: Path, tmp_path: Path
) -> None:
    from retrieval_kd.scores.scoring import score_pairs
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.timing import Phases
    from retrieval_kd.types import Pair

    teacher = build_teacher("llm-pointwise", str(tiny_lm), batch_size=2, device="cpu", max_length=4)
    assert teacher.prepare_ahead is False  # on a CPU the forward passes take every core
    queries = {f"q{i}": q for i, q in enumerate(QUERIES)}
    docs = {f"d{i}": p for i, p in enumerate(PASSAGES)}
    pairs = [Pair(q, d) for q in queries for d in docs]
    stored = {}
    for ahead in (False, True):
        teacher.prepare_ahead = ahead
        phases = Phases()
        with ScoreStore.open(tmp_path / str(ahead), teacher.fingerprint(), teacher.spec()) as store:
            assert score_pairs(store, teacher, pairs, queries, docs, batch_size=2, phases=phases) == 9
        stored[ahead] = ScoreStore.load(tmp_path / str(ahead), teacher.fingerprint()).lookup(pairs)
        assert ("tokenize" in phases.seconds) == ahead  # the wait for the part prepared ahead
    np.testing.assert_array_equal(stored[True], stored[False])
    # passages cut to 4 tokens in one batched call, as one at a time
    tok = teacher.llm.tokenizer
    cut = [
        p if len(x) <= 4 else tok.decode(x[:4])
        for p in PASSAGES
        for x in [tok.encode(p, add_special_tokens=False)]
    ]
    assert teacher.llm.truncate_all(PASSAGES, 4) == cut and cut[2] != PASSAGES[2]
    want = direct(tiny_lm, [QUERIES[0]] * 3, cut)
    np.testing.assert_allclose(stored[True][:3], want, atol=2e-5)
