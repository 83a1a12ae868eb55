"""``rkd scores inspect | combine | export`` and ``rkd import-scores --allow-pickle`` through typer."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.scores.ensemble import fingerprint
from retrieval_kd.scores.inspect import inspect_stores
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.testing import store_dict
from retrieval_kd.types import Pair

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def stores(tmp_path: Path) -> list[Path]:
    # q1: A orders d1 < d2 < d3; B orders d1 < d3 < d2: tau = 1/3. q2: A and B agree: tau = 1.
    data = {
        "A": {("q1", "d1"): 1, ("q1", "d2"): 2, ("q1", "d3"): 3, ("q2", "d1"): 1, ("q2", "d2"): 2},
        "B": {("q1", "d1"): 10, ("q1", "d2"): 30, ("q1", "d3"): 20, ("q2", "d1"): 0, ("q2", "d2"): 5},
    }
    for fp, scores in data.items():
        with ScoreStore.open(tmp_path / fp.lower(), fp, {"kind": "test"}) as s:
            s.add([Pair(*k) for k in scores], np.array(list(scores.values()), np.float32))
    return [tmp_path / "a" / "A", tmp_path / "b"]  # a teacher folder and a one-teacher root


def test_inspect_table_numbers_and_png(stores: list[Path], tmp_path: Path) -> None:
    found = inspect_stores([ScoreStore.load(p.parent if p.name == "A" else p) for p in stores])
    g = found.agreements[0]
    assert (g.shared_pairs, g.shared_queries, g.queries) == (5, 2, 2)
    assert g.kendall_tau == pytest.approx((1 / 3 + 1) / 2)
    assert g.top10_overlap == 1.0  # fewer than 10 docs: the whole query on both sides
    assert found.distributions[0].mean == pytest.approx(9 / 5)
    assert found.distributions[1].quantiles[-1] == 30
    code, output = invoke("scores", "inspect", *map(str, stores), "--png", str(tmp_path / "p.png"))
    assert code == 0, output
    assert "T1 vs T2" in output and "0.6667" in output and "1.8" in output
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_combine_prints_the_fingerprint_and_writes_the_store(stores: list[Path], tmp_path: Path) -> None:
    code, output = invoke(
        "scores", "combine", *map(str, stores), "--weights", "0.7,0.3", "--out", str(tmp_path / "e")
    )
    assert code == 0, output
    fp = fingerprint(["A", "B"], [0.7, 0.3], "zscore")
    assert fp in output
    written = ScoreStore.load(tmp_path / "e", fp)
    z = np.sqrt(1.5)
    assert store_dict(written)[("q1", "d2")] == pytest.approx(0.7 * 0 + 0.3 * z, rel=1e-6)
    code, output = invoke("scores", "combine", *map(str, stores), "--weights", "1,x")
    assert code == 2 and "expected comma-separated numbers" in output


def test_export_and_import_back_through_the_cli(stores: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "a.pkl.gz"
    code, output = invoke("scores", "export", str(stores[0]), "--format", "st-pickle", "--out", str(out))
    assert code == 0 and "exported 5 scores" in output, output
    assert pickle.loads(gzip.decompress(out.read_bytes()))["q1"] == {"d1": 1.0, "d2": 2.0, "d3": 3.0}
    args = ("import-scores", str(out), "--store", str(tmp_path / "back"), "--teacher", "A")
    code, output = invoke(*args)
    assert code == 2 and "refusing to read a pickle" in output and "--allow-pickle" in output
    code, output = invoke(*args, "--allow-pickle")
    assert code == 0 and "imported 5 scores" in output, output
    assert store_dict(ScoreStore.load(tmp_path / "back")) == store_dict(ScoreStore.load(stores[0].parent))
