"""The listwise LLM teacher: permutation parsing on malformed outputs, sliding windows, FIRST
scores against a direct forward pass, and a store from the score stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.teachers import build_teacher
from retrieval_kd.teachers.llm_listwise import parse_permutation, windows
from retrieval_kd.testing import store_dict

ABCD = ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("text", "order", "faults"),
    [
        ("C > A > D > B", [2, 0, 3, 1], (0, 0, 0)),
        ("[C] > [A] > [D] > [B]", [2, 0, 3, 1], (0, 0, 0)),
        ("C > A", [2, 0, 1, 3], (0, 0, 2)),  # missing: appended in window order
        ("C > C > A > B > D > A", [2, 0, 1, 3], (0, 2, 0)),  # repeats dropped
        ("E > C > Z > B", [2, 1, 0, 3], (2, 0, 2)),  # unknown labels dropped
        ("Answer: I think D, then B.", [3, 1, 0, 2], (1, 0, 2)),  # "I" is unknown, words ignored
        ("", [0, 1, 2, 3], (0, 0, 4)),
        ("ABCD > BA", [0, 1, 2, 3], (0, 0, 4)),  # letters inside words are not labels
    ],
)
def test_parse_permutation_never_fails_and_counts_faults(
    text: str, order: list[int], faults: tuple[int, ...]
) -> None:
    got, counted = parse_permutation(text, ABCD)
    assert got == order
    assert (counted["unknown"], counted["repeated"], counted["missing"]) == faults


def test_windows_slide_from_the_bottom_up() -> None:
    assert windows(3, 4, 2) == [(0, 3)]
    assert windows(7, 4, 2) == [(3, 7), (1, 5), (0, 3)]


def direct_label_logits(folder: Path, prompt: str, n: int) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(ids).logits[0, -1]
    return logits[tok.convert_tokens_to_ids(list("abcdefgh"[:n]))].numpy()


def test_first_mode_orders_by_the_label_logits(tiny_lm: Path) -> None:
    teacher = build_teacher("llm-listwise", str(tiny_lm), device="cpu", mode="first", window=4, step=2)
    passages = ["engines burn fuel", "apples are red", "the river flows", "cars have engines"]
    (scores,) = teacher.rank_lists(["red fruit"], [passages])
    logits = direct_label_logits(tiny_lm, teacher.prompt("red fruit", passages), 4)
    assert np.ptp(logits) > 1e-3
    # one window holds the whole list: rank by logit, score = −rank
    np.testing.assert_array_equal(scores, -np.argsort(np.argsort(-logits, kind="stable")).astype(np.float32))
    assert teacher.calls(4) == 1 and teacher.calls(7) == 3


def test_generate_mode_counts_malformed_output_and_stores_a_ranking(
    tiny_beir: Path, tiny_model: Path, tiny_lm: Path, tmp_path: Path
) -> None:
    from retrieval_kd.stages import MineStage, ScoreStage, mine_stage, score_stage

    train = f"{tiny_beir}:train"
    mined = mine_stage(MineStage(train, str(tiny_model), tmp_path / "cands", negatives=4))
    options = {"window": 3, "step": 2, "max_new_tokens": 6}
    config = ScoreStage(
        mined.path, train, "llm-listwise", str(tiny_lm), tmp_path / "store", 4, options=options
    )
    result = score_stage(config)
    assert "malformed outputs {'unknown'" in result.summary  # a random LLM writes no clean permutation
    store = ScoreStore.load(tmp_path / "store", result.extra["teacher"])
    assert store.manifest["teacher"]["rule"].startswith("score = -rank")
    scores = store_dict(store)
    by_query: dict[str, list[float]] = {}
    for (q, _), s in scores.items():
        by_query.setdefault(q, []).append(s)
    for values in by_query.values():  # each query's 5 candidates ranked 0..4
        assert sorted(values) == [-4.0, -3.0, -2.0, -1.0, 0.0]
    assert not score_stage(config).ran
