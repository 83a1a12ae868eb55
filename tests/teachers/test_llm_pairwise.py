"""The pairwise LLM teacher: both orders against a direct forward pass, a SIGKILLed run that
resumes to the same preferences, and the score stage's derived targets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.scores.judging import judge_lists
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.teachers import build_teacher
from retrieval_kd.teachers.llm_pairwise import TEMPLATE
from retrieval_kd.testing import store_dict

QUERIES = {"q1": "which fruit is red", "q2": "how do engines burn fuel"}
DOCS = {
    "d0": "apples are a red fruit",
    "d1": "engines burn fuel",
    "d2": "the river flows to the sea",
    "d3": "red cars have engines",
    "d4": "fruit grows on trees",
}


def direct(folder: Path, query: str, a: str, b: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    message = [{"role": "user", "content": TEMPLATE.format(query=query, passage_a=a, passage_b=b)}]
    ids = tok(
        tok.apply_chat_template(message, tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
        return_tensors="pt",
    ).input_ids
    with torch.inference_mode():
        logits = model(ids).logits[0, -1]
    first, second = tok.convert_tokens_to_ids(["a", "b"])  # the vocabulary lowercases A and B
    return float(logits[first] - logits[second])


def test_every_pair_in_both_orders_equals_a_direct_forward(tiny_lm: Path, tmp_path: Path) -> None:
    teacher = build_teacher("llm-pairwise", str(tiny_lm), batch_size=3, device="cpu")
    assert teacher.calls(3) == 6
    store = ScoreStore.open(tmp_path, teacher.fingerprint(), teacher.spec(), kind="pairwise")
    assert judge_lists(store, teacher, {"q1": ["d0", "d1", "d2"]}, QUERIES, DOCS, batch_size=4) == 6
    got = store_dict(store)
    assert sorted(got) == [("q1", a, b) for a in ("d0", "d1", "d2") for b in ("d0", "d1", "d2") if a != b]
    for (q, a, b), value in got.items():
        assert value == pytest.approx(direct(tiny_lm, QUERIES[q], DOCS[a], DOCS[b]), abs=2e-5)
    assert got[("q1", "d0", "d1")] != pytest.approx(-got[("q1", "d1", "d0")], abs=1e-3)  # position bias
    assert judge_lists(store, teacher, {"q1": ["d0", "d1", "d2"]}, QUERIES, DOCS) == 0  # all stored


KILLED_RUN = """
import json, os, signal, sys
from retrieval_kd.scores.judging import judge_lists
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.teachers import build_teacher

root, model, data = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
teacher = build_teacher("llm-pairwise", model, batch_size=2, device="cpu", all_pairs_up_to=3, passes=2)
judge, calls = teacher.judge, []
def killing(*args):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return judge(*args)
teacher.judge = killing
store = ScoreStore.open(root, teacher.fingerprint(), teacher.spec(), kind="pairwise")
judge_lists(store, teacher, data["lists"], data["queries"], data["docs"], batch_size=4)
"""


def test_sigkilled_sliding_run_resumes_to_the_same_preferences(tiny_lm: Path, tmp_path: Path) -> None:
    lists = {"q1": ["d0", "d1", "d2", "d3", "d4"], "q2": ["d4", "d3", "d1"]}  # sliding, all pairs
    options = {"batch_size": 2, "device": "cpu", "all_pairs_up_to": 3, "passes": 2}
    teacher = build_teacher("llm-pairwise", str(tiny_lm), **options)
    assert teacher.calls(5) + teacher.calls(3) == 14 + 6
    whole = ScoreStore.open(tmp_path / "whole", teacher.fingerprint(), kind="pairwise")
    asked = judge_lists(whole, teacher, lists, QUERIES, DOCS, batch_size=4)
    # at most the stated 20: a comparison sliding pass 2 repeats from pass 1 is read back
    assert asked == len(whole) <= 20 and asked > 8 + 4

    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"lists": lists, "queries": QUERIES, "docs": DOCS}))
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    root = tmp_path / "resumed"
    proc = subprocess.run(
        [sys.executable, str(script), str(root), str(tiny_lm), str(inputs)], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    killed = ScoreStore.open(root, teacher.fingerprint(), kind="pairwise")
    assert len(killed) == 8  # two batches of 4 stored before the kill in the third
    assert judge_lists(killed, teacher, lists, QUERIES, DOCS, batch_size=4) == asked - 8
    assert killed.to_table().equals(whole.to_table())  # bit for bit


def test_score_stage_stores_preferences_and_derived_targets(
    tiny_beir: Path, tiny_model: Path, tiny_lm: Path, tmp_path: Path
) -> None:
    from retrieval_kd.stages import MineStage, ScoreStage, mine_stage, score_stage

    train = f"{tiny_beir}:train"
    mined = mine_stage(MineStage(train, str(tiny_model), tmp_path / "cands", negatives=2))
    options = {"all_pairs_up_to": 3, "targets": "win-rate"}
    config = ScoreStage(
        mined.path, train, "llm-pairwise", str(tiny_lm), tmp_path / "store", 8, options=options
    )
    result = score_stage(config)
    derived = ScoreStore.load(tmp_path / "store", result.extra["teacher"])
    assert derived.kind == "pointwise"
    spec = derived.manifest["teacher"]
    assert spec["method"] == "win-rate" and spec["kind"] == "derived"
    pairwise = ScoreStore.load(tmp_path / "store", spec["from"])
    assert pairwise.kind == "pairwise"
    prefs = store_dict(pairwise)
    targets = store_dict(derived)
    n_queries = len({q for q, _ in targets})
    assert len(prefs) == 6 * n_queries and len(targets) == 3 * n_queries  # 3 candidates each
    for (q, d), value in targets.items():  # win rate: mean σ((v(d, o) − v(o, d)) / 2) over others
        others = [o for (qq, o) in targets if qq == q and o != d]
        want = np.mean([1 / (1 + np.exp(-(prefs[(q, d, o)] - prefs[(q, o, d)]) / 2)) for o in others])
        assert value == pytest.approx(want, abs=1e-6)
    assert not score_stage(config).ran  # up to date
