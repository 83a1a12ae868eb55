"""False-negative filtering in mining (RocketQA's denoising through sentence-transformers'
``mine_hard_negatives``): the dropped negatives and their count, checked against the same rule
computed directly from the mining model's embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.config import RecipeConfig
from retrieval_kd.data import load_dataset
from retrieval_kd.data.candidates import Candidates
from retrieval_kd.errors import ConfigError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.stages import MineStage, mine_stage
from retrieval_kd.stages._common import model_hash

N = 4  # negatives per query


def cosine(
    tiny_beir: Path, tiny_model: Path
) -> tuple[dict[str, np.ndarray], list[str], dict[str, tuple[str, ...]]]:
    """Each train query's cosine with every document, the doc ids, and its positives."""
    from sentence_transformers import SentenceTransformer

    ds = load_dataset(f"{tiny_beir}:train")
    model = SentenceTransformer(str(tiny_model), device="cpu")
    ids = list(ds.docs)
    docs = model.encode_document([ds.docs[d].full_text() for d in ids], normalize_embeddings=True)
    qids = list(ds.queries)
    queries = model.encode_query([ds.queries[q] for q in qids], normalize_embeddings=True)
    sims = {q: np.asarray(docs @ v, dtype=np.float64) for q, v in zip(qids, queries, strict=True)}
    positives = {q: tuple(d for d, r in ds.qrels[q].items() if r > 0) for q in qids}
    return sims, ids, positives


def ranked_negatives(sim: np.ndarray, ids: list[str], positives: tuple[str, ...], qid: str) -> list[str]:
    order = sorted(range(len(ids)), key=lambda i: (-sim[i], ids[i]))
    return [ids[i] for i in order if ids[i] not in positives and ids[i] != qid]


def threshold(
    sim: np.ndarray, ids: list[str], positives: tuple[str, ...], absolute: float, relative: float
) -> float:
    """A negative is dropped above this: the lowest positive score minus the margins."""
    low = min(sim[ids.index(p)] for p in positives)
    return min(low - absolute, low - abs(low) * relative)


@pytest.mark.parametrize("which", ["absolute_margin", "relative_margin"])
def test_margin_drops_the_negatives_the_embeddings_say(
    tiny_beir: Path, tiny_model: Path, tmp_path: Path, which: str
) -> None:
    sims, ids, positives = cosine(tiny_beir, tiny_model)
    # today's mining, unfiltered: each query's top N non-positives by cosine
    plain = mine_stage(MineStage(f"{tiny_beir}:train", str(tiny_model), tmp_path / "plain", negatives=N))
    plain_cands = Candidates.load(plain.path)
    assert "false_negatives" not in plain_cands.manifest
    top = {q: ranked_negatives(sims[q], ids, positives[q], q)[:N] for q in sims}
    assert {c.query_id: list(c.negatives) for c in plain_cands.items} == top

    # The margin: midway between the two smallest gaps (positive - negative, absolute or relative
    # to the positive) of negatives that score below their positive, so the closest of them is
    # dropped (and every negative above its positive: this random model ranks some there) and
    # no score sits near the boundary.
    def gap(q: str, d: str) -> float:
        low = min(sims[q][ids.index(p)] for p in positives[q])
        diff = low - sims[q][ids.index(d)]
        return float(diff if which == "absolute_margin" else diff / abs(low))

    gaps = sorted((g, q, d) for q in top for d in top[q] if (g := gap(q, d)) > 1e-4)
    hardest = gaps[0]
    margin = (gaps[0][0] + next(g for g, _, _ in gaps if g > gaps[0][0] + 1e-4)) / 2
    absolute, relative = (margin, 0.0) if which == "absolute_margin" else (0.0, margin)

    filtered = mine_stage(
        MineStage(
            f"{tiny_beir}:train", str(tiny_model), tmp_path / "filtered", negatives=N, **{which: margin}
        )
    )
    cands = Candidates.load(filtered.path)
    got = {c.query_id: list(c.negatives) for c in cands.items}
    _, q_hard, d_hard = hardest
    assert d_hard in top[q_hard] and d_hard not in got[q_hard]  # the hardest negative is gone

    # the same rule, straight from the embeddings: keep the first N that pass
    expected, dropped = {}, 0
    for q in top:
        cut = threshold(sims[q], ids, positives[q], absolute, relative)
        passing = [d for d in ranked_negatives(sims[q], ids, positives[q], q) if sims[q][ids.index(d)] <= cut]
        expected[q] = passing[:N]
        dropped += sum(sims[q][ids.index(d)] > cut for d in top[q])
    assert got == expected
    record = cands.manifest["false_negatives"]
    assert dropped >= 1
    assert record["dropped"] == dropped
    assert record[which] == margin and record["short"] == sum(len(v) < N for v in expected.values())
    assert f"{dropped} likely false negatives dropped" in filtered.summary
    assert not (filtered.path / "index").exists()  # filtered mining searches without an index


def test_margin_off_keeps_the_fingerprint(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    stage = MineStage(f"{tiny_beir}:train", str(tiny_model), tmp_path / "m", negatives=N)
    before = {  # the settings the mining fingerprint hashed before the filter existed
        "dataset": stage.dataset,
        "model": model_hash(stage.model),
        "kind": "dense",
        "negatives": N,
        "batch_size": 32,
        "max_seq_length": None,
        "index": {},
    }
    assert stage.fingerprint() == hash_json(before)
    on = MineStage(f"{tiny_beir}:train", str(tiny_model), tmp_path / "m", negatives=N, absolute_margin=0.1)
    assert on.fingerprint() == hash_json({**before, "absolute_margin": 0.1})


@pytest.mark.parametrize(
    ("mine", "message"),
    [
        ({"absolute_margin": -0.1}, "[mine].absolute_margin: expected a number >= 0, got -0.1"),
        ({"relative_margin": 1.5}, "[mine].relative_margin"),
        ({"kind": "bm25", "relative_margin": 0.05}, "needs kind = 'dense', got 'bm25'"),
    ],
)
def test_margins_are_checked(mine: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        RecipeConfig.from_dict({"mine": mine}, "r.toml")
    assert message in str(e.value)
    assert str(e.value).startswith("r.toml: [mine]")


def test_rkd_mine_margin_options(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    """``rkd mine --absolute-margin`` is the stage's filter (same candidates and count); a margin
    out of range is refused with exit status 2 before anything is written."""
    from typer.testing import CliRunner

    from retrieval_kd.cli import app

    args = ["mine", "--dataset", f"{tiny_beir}:train", "--model", str(tiny_model), "--negatives", str(N)]
    result = CliRunner().invoke(app, [*args, "--absolute-margin", "0.05", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    stage = mine_stage(
        MineStage(f"{tiny_beir}:train", str(tiny_model), tmp_path / "lib", negatives=N, absolute_margin=0.05)
    )
    cli, lib = Candidates.load(tmp_path / "cli"), Candidates.load(stage.path)
    assert cli.items == lib.items
    assert cli.manifest["false_negatives"] == lib.manifest["false_negatives"]
    assert f"{lib.manifest['false_negatives']['dropped']} likely false negatives dropped" in result.output
    bad = CliRunner().invoke(app, [*args, "--relative-margin", "1.5", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()
