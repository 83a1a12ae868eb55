"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.teachers import TEACHERS

runner = CliRunner()


def fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, result.output
    return " ".join(result.output.split())  # rich may wrap; compare on single spaces


def test_malformed_jsonl_line(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_beir, folder)
    lines = (folder / "queries.jsonl").read_text().splitlines()
    lines[2] = '{"_id": "q2", "text": "why'
    (folder / "queries.jsonl").write_text("\n".join(lines) + "\n")
    out = fails(
        "mine", "--dataset", f"{folder}:train", "--model", str(tiny_model), "--out", str(tmp_path / "c")
    )
    assert f"{folder / 'queries.jsonl'}:3: malformed JSON line" in out
    assert not (tmp_path / "c").exists()


def test_unknown_dataset_id(tiny_model: Path, tmp_path: Path) -> None:
    out = fails(
        "index", "--dataset", "beir/scifactx/test", "--model", str(tiny_model), "--out", str(tmp_path / "i")
    )
    assert "unknown dataset 'beir/scifactx/test'" in out and "rkd datasets" in out
    assert not (tmp_path / "i").exists()


def test_missing_model_path(tiny_beir: Path, tmp_path: Path) -> None:
    out = fails(
        "mine",
        "--dataset",
        f"{tiny_beir}:train",
        "--model",
        str(tmp_path / "no-model"),
        "--out",
        str(tmp_path / "c"),
    )
    assert f"model path '{tmp_path / 'no-model'}' does not exist" in out


def test_unknown_hub_id_offline(tiny_beir: Path, tmp_path: Path) -> None:
    out = fails(
        "mine",
        "--dataset",
        f"{tiny_beir}:train",
        "--model",
        "nobody/no-such-model",
        "--out",
        str(tmp_path / "c"),
    )
    assert "model 'nobody/no-such-model' not found" in out


def test_candidates_with_unknown_doc(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    cands = tmp_path / "cands"
    cands.mkdir()
    (cands / "candidates.jsonl").write_text(
        json.dumps({"query_id": "q0", "positives": ["solar-0"], "negatives": ["coffee-1"]})
        + "\n"
        + json.dumps({"query_id": "q2", "positives": ["coffee-0"], "negatives": ["nope-9"]})
        + "\n"
    )
    out = fails(
        "score-teacher",
        "--candidates",
        str(cands),
        "--dataset",
        f"{tiny_beir}:train",
        "--model",
        str(tiny_model),
        "--teacher",
        "bi-encoder",
        "--store",
        str(tmp_path / "store"),
    )
    assert f"{cands / 'candidates.jsonl'}:2: doc id 'nope-9' (query 'q2') is not in the corpus" in out
    assert not (tmp_path / "store").exists()


def test_teacher_returning_nan(tiny_beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cands = tmp_path / "cands"
    cands.mkdir()
    (cands / "candidates.jsonl").write_text(
        json.dumps(
            {"query_id": "q0", "positives": ["solar-0"], "negatives": ["coffee-1", "rust-2", "bread-3"]}
        )
        + "\n"
    )
    # registered for this test only: later tests list the registry's names in their messages
    monkeypatch.setitem(TEACHERS._entries, "nan-test", "nan_teacher:NanTeacher")
    out = fails(
        "score-teacher",
        "--candidates",
        str(cands),
        "--dataset",
        f"{tiny_beir}:train",
        "--model",
        "x",
        "--teacher",
        "nan-test",
        "--store",
        str(tmp_path / "store"),
        "--part-size",
        "2",
    )
    assert "returned a non-finite score nan" in out and "none of this batch of 2 was stored" in out
    from retrieval_kd.scores.store import ScoreStore

    assert len(ScoreStore.load(tmp_path / "store")) == 2  # the first batch survives, the bad one is absent


def test_unknown_teacher_kind_and_loss(tiny_beir: Path, tmp_path: Path) -> None:
    out = fails(
        "score-teacher",
        "--candidates",
        str(tmp_path),
        "--dataset",
        str(tiny_beir),
        "--model",
        "x",
        "--teacher",
        "cross-encodr",
        "--store",
        str(tmp_path / "s"),
    )
    assert "unknown teacher 'cross-encodr'; choose from ['bi-encoder', 'cross-encoder'" in out
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[train]\nloss = "mse2"\n')
    out = fails("run", str(cfg), "--out", str(tmp_path / "o"))
    losses = "['bce', 'kl', 'margin_mse', 'pairwise', 'preference']"
    assert f"[train].loss = 'mse2' is unknown; choose from {losses}" in out
    cfg.write_text('[train]\nlr = "fast"\n')
    out = fails("run", str(cfg), "--out", str(tmp_path / "o"))
    assert f"{cfg}: [train].lr: expected a number, got 'fast'" in out
    cfg.write_text("[trian]\n")
    out = fails("run", str(cfg), "--out", str(tmp_path / "o"))
    assert "unknown section(s) ['trian']" in out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("metric", ["ndgc@10"])
def test_unknown_metric(tiny_beir: Path, tiny_model: Path, tmp_path: Path, metric: str) -> None:
    out = fails(
        "eval",
        "beir",
        "--dataset",
        str(tiny_beir),
        "--model",
        str(tiny_model),
        "--metric",
        metric,
        "--out",
        str(tmp_path / "e"),
    )
    assert f"unknown metric '{metric}'; choose from" in out
