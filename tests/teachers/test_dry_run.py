"""``rkd score-teacher --dry-run``: the estimate against the real run, and nothing written."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.data import load_dataset
from retrieval_kd.data.candidates import Candidates
from retrieval_kd.stages import MineStage, ScoreStage, mine_stage
from retrieval_kd.stages.estimate import estimate_stage
from retrieval_kd.teachers import build_teacher


def test_estimate_is_within_a_factor_of_two_of_the_real_run(
    tiny_beir: Path, tiny_model: Path, tiny_lm: Path, tmp_path: Path
) -> None:
    train = f"{tiny_beir}:train"
    mined = mine_stage(MineStage(train, str(tiny_model), tmp_path / "cands", negatives=15))
    config = ScoreStage(mined.path, train, "llm-pointwise", str(tiny_lm), tmp_path / "store", 8, device="cpu")
    dataset = load_dataset(train)
    pairs = Candidates.load(mined.path, corpus=dataset.docs).pairs()
    teacher = build_teacher("llm-pointwise", str(tiny_lm), batch_size=8, device="cpu")
    texts = dataset.doc_texts()
    tokens = teacher.prompt_tokens([dataset.queries[q] for q, _ in pairs], [texts[d] for _, d in pairs])
    teacher.score(["warm"], ["up"])  # as the estimate does: a first call's cost is not per pair
    # An estimate and a real run side by side, up to 3 rounds: on a shared CPU a neighbour can
    # slow either side of one round; an estimator that is off fails every round.
    rounds = []
    for _round in range(3):
        estimate = estimate_stage(config, sample=48)
        assert not (tmp_path / "store").exists()  # nothing written
        assert estimate.pairs == estimate.calls == len(pairs) >= 100 and estimate.sample_calls == 48
        assert estimate.tokens is not None and 0.8 <= estimate.tokens / tokens <= 1.25  # 48 of 128 pairs
        # the real scoring: every pair through the teacher, as score_pairs hands them over (its
        # part writes are left out: an fsync stalled by a busy disk is not the teacher's cost)
        start = time.perf_counter()
        scores = teacher.score([dataset.queries[q] for q, _ in pairs], [texts[d] for _, d in pairs])
        real = time.perf_counter() - start
        assert len(scores) == len(pairs)
        rounds.append((estimate.seconds, real))
        if real / 2 <= estimate.seconds <= real * 2:
            break
    else:
        raise AssertionError(f"estimate vs real seconds, every round off by more than 2x: {rounds}")


def test_cli_dry_run_prints_the_cost_of_a_pairwise_job(
    tiny_beir: Path, tiny_model: Path, tiny_lm: Path, tmp_path: Path
) -> None:
    train = f"{tiny_beir}:train"
    mined = mine_stage(MineStage(train, str(tiny_model), tmp_path / "cands", negatives=4))
    n_queries = len(Candidates.load(mined.path).items)
    result = CliRunner().invoke(
        app,
        [
            "score-teacher", "--candidates", str(mined.path), "--dataset", train, "--model", str(tiny_lm),
            "--store", str(tmp_path / "store"), "--teacher", "llm-pairwise", "--device", "cpu",
            "--option", "all_pairs_up_to=3", "--option", "passes=2", "--dry-run", "--sample", "20",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    # 5 candidates a query (1 positive, 4 negatives), sliding with 2 passes: 2 × (4 + 3) = 14
    assert f"{5 * n_queries} pairs, {14 * n_queries} teacher calls" in out, out
    assert "estimated wall time" in out and "nothing was written" in out
    assert not (tmp_path / "store").exists()
