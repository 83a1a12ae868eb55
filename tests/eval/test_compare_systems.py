"""Comparing systems: ranx's raw p-values corrected by Holm across all pairs, the cost columns
measured in the evaluation run, the written Markdown / JSON / PNG, `rkd eval compare` over saved
evaluations, and a recipe's extra systems beside a reused mining and a shared score store."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.config import load_config
from retrieval_kd.eval.metrics import compare
from retrieval_kd.eval.report import markdown, pareto, write_comparison
from retrieval_kd.eval.stats import adjust
from retrieval_kd.pipeline import run_recipe
from retrieval_kd.scores.store import ScoreStore


def _runs() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, dict[str, float]]]]:
    """40 queries with one relevant doc each; three systems that rank it at different depths."""
    rng = random.Random(7)
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(40)}
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for name, depth in (("good", 1), ("mid", 3), ("bad", 6)):
        runs[name] = {}
        for i in range(40):
            rank = max(0, depth + rng.randint(-1, 3) - 1)
            docs = [f"x{i}-{j}" for j in range(10)]
            docs.insert(rank, f"d{i}")
            runs[name][f"q{i}"] = {d: float(20 - r) for r, d in enumerate(docs)}
    return qrels, runs


def test_holm_correction_of_ranx_p_values_by_hand() -> None:
    qrels, runs = _runs()
    report = compare(runs, qrels, ["mrr@10"], stat_test="student", correction="holm")
    # ranx's raw p-value is the two-sided paired t-test of per-query reciprocal ranks
    rr = {
        name: np.array(
            [1.0 / (1 + sorted(run[q], key=lambda d: -run[q][d]).index(f"d{q[1:]}")) for q in qrels]
        )
        for name, run in runs.items()
    }
    raw = {
        ("good", "mid"): report.p_values["good"]["mid"]["mrr@10"],
        ("good", "bad"): report.p_values["good"]["bad"]["mrr@10"],
        ("mid", "bad"): report.p_values["mid"]["bad"]["mrr@10"],
    }
    for (a, b), p in raw.items():
        assert p == pytest.approx(stats.ttest_rel(rr[a], rr[b]).pvalue, rel=1e-6)
        assert report.p_values[b][a]["mrr@10"] == p  # symmetric
    # Holm by hand: sort ascending, multiply by 3, 2, 1, keep the running maximum, cap at 1
    order = sorted(raw, key=raw.__getitem__)
    expected, running = {}, 0.0
    for factor, pair in zip((3, 2, 1), order, strict=True):
        running = max(running, min(1.0, factor * raw[pair]))
        expected[pair] = running
    for (a, b), p in expected.items():
        assert report.p_adjusted[a][b]["mrr@10"] == pytest.approx(p, rel=1e-12)
        assert report.p_adjusted[b][a]["mrr@10"] == pytest.approx(p, rel=1e-12)
    assert report.correction == "holm"
    assert "Holm-corrected across 3 pairs" in report.legend()


def test_a_win_that_does_not_survive_the_correction() -> None:
    raw = {("a", "b"): 0.04, ("a", "c"): 0.03, ("b", "c"): 0.5}
    fixed = adjust(raw, "holm")
    # sorted: a-c 0.03·3 = 0.09, a-b 0.04·2 = 0.08 → 0.09 (never below the step before), b-c 0.5·1
    assert fixed == {("a", "b"): 0.09, ("a", "c"): 0.09, ("b", "c"): 0.5}
    assert all(p >= 0.05 for p in fixed.values())  # both raw "wins" vanish under Holm
    assert adjust(raw, "none") == raw


def test_uncorrected_letters_are_a_superset_of_corrected_ones() -> None:
    qrels, runs = _runs()
    holm = compare(runs, qrels, ["mrr@10", "ndcg@10"], correction="holm")
    none = compare(runs, qrels, ["mrr@10", "ndcg@10"], correction="none")
    for r in runs:
        for m in ("mrr@10", "ndcg@10"):
            assert set(holm.better_than[r][m]) <= set(none.better_than[r][m])
    assert holm.better_than["good"]["mrr@10"] == ["mid", "bad"]  # clear wins survive


def test_written_comparison(tmp_path: Path) -> None:
    qrels, runs = _runs()
    report = compare(runs, qrels, ["mrr@10"])
    rows = report.metrics
    costs = {
        "good": {"latency_ms_p50": 9.0, "index_bytes": 2_500_000, "qps": 100.0, "parameters": 22_000_000},
        "mid": {"latency_ms_p50": 2.0, "index_bytes": 1_000_000, "qps": 400.0, "parameters": 11_000_000},
        "bad": {"latency_ms_p50": 4.0, "index_bytes": 1_000_000, "qps": 300.0, "parameters": 11_000_000},
    }
    assert pareto({n: (costs[n]["latency_ms_p50"], rows[n]["mrr@10"]) for n in rows}) == ["mid", "good"]
    files = write_comparison(tmp_path, rows, ["mrr@10"], costs, report, dataset="toy")
    text = files["markdown"].read_text()
    assert text.splitlines()[0] == "| # | system | mrr@10 | index MB | p50 ms | QPS | params M |"
    assert "| a | good | " in text and "| 2.5 | 9.00 | 100 | 22.0 |" in text
    assert "Holm-corrected across 3 pairs per metric" in text
    two = compare({n: runs[n] for n in ("good", "bad")}, qrels, ["mrr@10"])
    assert two.legend().endswith("Holm-corrected across 1 pair per metric)")
    record = json.loads(files["json"].read_text())
    assert record["pareto_front"] == {"metric": "mrr@10", "systems": ["mid", "good"]}
    assert (
        record["significance"]["p_adjusted"]["good"]["mid"]["mrr@10"]
        == report.p_adjusted["good"]["mid"]["mrr@10"]
    )
    with Image.open(files["plot"]) as png:
        assert png.format == "PNG" and png.size == (840, 540)
        assert len(set(png.convert("L").getdata())) > 10  # drawn, not blank
    assert markdown(rows, ["mrr@10"]).count("\n") == 5  # no report, no costs: header, rule, 3 rows


def test_recipe_extra_systems_shared_store_and_reused_mining(
    tiny_recipe: Path, tiny_model: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    run_recipe(load_config(tiny_recipe), first)
    store = ScoreStore.load(first / "scores")
    pairs = len(store.to_table())
    parts = sorted(p.name for p in (first / "scores").rglob("*.parquet"))

    recipe = tmp_path / "second.toml"
    text = tiny_recipe.read_text().replace("[mine]\n", f'[mine]\nreuse = ["{first / "mine"}"]\n')
    text = text.replace("[teacher]\n", f'[teacher]\nstore = "{first / "scores"}"\n')
    text += f'\n[[eval.systems]]\nname = "untrained"\nmodel = "{tiny_model}"\n'
    text += f'\n[[eval.systems]]\nname = "teacher-index"\nindex = "{first / "index" / "teacher"}"\n'
    recipe.write_text(text)
    second = tmp_path / "second"
    report = run_recipe(load_config(recipe), second)

    assert report["stages"]["mine"] is True and (second / "mine" / "candidates.jsonl").samefile(
        first / "mine" / "candidates.jsonl"
    )  # adopted: hard-linked, not mined again
    assert not (second / "scores").exists()
    assert len(ScoreStore.load(first / "scores").to_table()) == pairs  # nothing rescored
    assert sorted(p.name for p in (first / "scores").rglob("*.parquet")) == parts
    assert list(report["metrics"]) == [
        "teacher",
        "student_before",
        "student_after",
        "untrained",
        "teacher-index",
    ]
    # the teacher's own index evaluated again as a system gives the teacher's numbers
    assert report["metrics"]["teacher-index"] == report["metrics"]["teacher"]
    for name, cost in report["cost"].items():
        assert cost["index_bytes"] > 0 and cost["qps"] > 0, name
        assert 0 < cost["latency_ms_p50"] <= cost["latency_ms_p95"], name
        assert cost["parameters"] > 0, name
    assert report["cost"]["student_after"]["parameters"] < report["cost"]["teacher"]["parameters"]
    assert report["significance"]["correction"] == "holm"
    written = (second / "compare.md").read_text()
    assert "| e | teacher-index |" in written and "Holm-corrected across 10 pairs" in written
    assert (second / "compare.png").is_file()

    # the saved evaluations compared again from disk give the same metrics
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "eval",
            "compare",
            str(second / "eval" / "teacher"),
            str(second / "eval" / "student_after"),
            str(second / "eval" / "untrained"),
            "--dataset",
            str(load_config(recipe).data.eval),
            "--out",
            str(tmp_path / "cmp"),
            "--correction",
            "bonferroni",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert record["metrics"]["student_after"] == pytest.approx(report["metrics"]["student_after"])
    assert record["significance"]["correction"] == "bonferroni"
    assert record["cost"]["untrained"] == report["cost"]["untrained"]


def test_recipe_system_names_and_sources_are_checked(tiny_recipe: Path, tmp_path: Path) -> None:
    from retrieval_kd.errors import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_recipe.read_text() + '\n[[eval.systems]]\nname = "student_after"\nmodel = "x"\n')
    with pytest.raises(ConfigError, match=r"\[eval\]\.systems\[0\]\.name: 'student_after' is taken"):
        load_config(bad)
    bad.write_text(tiny_recipe.read_text() + '\n[[eval.systems]]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"give exactly one of 'model' \(to index\) or 'index'"):
        load_config(bad)
    bad.write_text(tiny_recipe.read_text() + '\n[[eval.systems]]\nname = "two words"\nmodel = "x"\n')
    with pytest.raises(ConfigError, match=r"\[eval\]\.systems\[0\]\.name: expected one word of letters"):
        load_config(bad)
