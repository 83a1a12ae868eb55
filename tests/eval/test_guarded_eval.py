"""Guarded evaluation through the CLI: misuse is refused (exit 2, one line) before any work, and
qrels the data cannot match are counted and reported, never silently kept. Also: every integer
option has a range, and a bad torchrun environment is one line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.data import load_dataset
from retrieval_kd.errors import RkdError
from retrieval_kd.eval.cost import cell, shown
from retrieval_kd.eval.metrics import evaluate
from retrieval_kd.eval.trec import read_trec
from retrieval_kd.indexing import corpus_fingerprint
from retrieval_kd.stages import EvalStage, evaluate_stage

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_index(_tiny_model_master: Path, tiny_beir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the tiny corpus, built once by `rkd index` (its student is read, not written)."""
    out = tmp_path_factory.mktemp("guarded") / "ix"
    result = runner.invoke(
        app, ["index", "--model", str(_tiny_model_master), "--dataset", str(tiny_beir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def fails(*args: str) -> str:
    """Runs the CLI, expects exit status 2 and no traceback; returns the output on single spaces."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return " ".join(result.output.replace("│", " ").split())  # rich wraps and boxes long lines


def copy_of(tiny_beir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "other"
    shutil.copytree(tiny_beir, folder)
    return folder


def test_index_of_another_corpus_is_refused(tiny_index: Path, tiny_beir: Path, tmp_path: Path) -> None:
    """Before: an index of another corpus was searched and scored (nDCG near 0), exit 0."""
    other = copy_of(tiny_beir, tmp_path)
    corpus = other / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("sunlight", "moonlight"))
    fp_index = corpus_fingerprint(load_dataset(str(tiny_beir)))
    fp_other = corpus_fingerprint(load_dataset(str(other)))
    out = fails(
        "eval", "beir", "--index", str(tiny_index), "--dataset", str(other), "--out", str(tmp_path / "e")
    )
    assert out == (
        f"error: {tiny_index} was built on the corpus of {tiny_beir}:test (fingerprint {fp_index}), "
        f"not on the corpus of {other}:test (fingerprint {fp_other}); index {other}:test with "
        "`rkd index` to evaluate on it"
    )
    assert not (tmp_path / "e").exists()


def test_cutoff_deeper_than_k_is_refused(tiny_index: Path, tiny_beir: Path, tmp_path: Path) -> None:
    """Before: ``-k 2`` with ``recall@100`` reported recall over a top 2 as recall@100."""
    out = fails(
        "eval",
        "beir",
        "--index",
        str(tiny_index),
        "--dataset",
        str(tiny_beir),
        "--metric",
        "ndcg@10",
        "--metric",
        "recall@100",
        "-k",
        "10",
        "--out",
        str(tmp_path / "e"),
    )
    assert out == (
        "error: metric 'recall@100' needs the top 100 documents but k is 10: "
        "retrieve deeper (k = 100) or lower the cutoff"
    )
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--max-queries",
            "0",
            "Invalid value for '--max-queries': Input should be greater than or equal to 1",
        ),
        ("-k", "0", "Invalid value for '-k' / '--k': Input should be greater than or equal to 1"),
        (
            "--batch-size",
            "-3",
            "Invalid value for '--batch-size': Input should be greater than or equal to 1",
        ),
    ],
)
def test_out_of_range_options_are_refused(
    tiny_index: Path, tiny_beir: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    out = fails(
        "eval",
        "beir",
        "--index",
        str(tiny_index),
        "--dataset",
        str(tiny_beir),
        option,
        value,
        "--out",
        str(tmp_path),
    )
    assert message in out
    assert not (tmp_path / "ix").exists()


def test_stage_refuses_before_loading(tiny_beir: Path, tmp_path: Path) -> None:
    """The library refuses too (a recipe's [eval]), before any index, dataset or model is read."""
    missing = tmp_path / "no-index"
    for config, message in [
        (
            EvalStage("s", missing, str(tiny_beir), tmp_path / "e", max_queries=0),
            "max_queries must be at least 1",
        ),
        (
            EvalStage("s", missing, str(tiny_beir), tmp_path / "e", k=0),
            "k (the retrieval depth) must be at least 1",
        ),
        (
            EvalStage("s", missing, str(tiny_beir), tmp_path / "e", k=50),
            "metric 'recall@100' needs the top 100",
        ),
        (
            EvalStage("s", missing, str(tiny_beir), tmp_path / "e", batch_size=0),
            "batch_size must be at least 1",
        ),
    ]:
        with pytest.raises(RkdError) as info:
            evaluate_stage(config)
        assert str(info.value).startswith(message)
    assert not (tmp_path / "e").exists()


def test_qrels_strangers_are_counted_and_reported(
    tiny_index: Path, tiny_beir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A judged query without text is left out (not scored 0); a judgement of a document outside
    the corpus is kept (trec_eval's convention); both are logged and counted in metrics.json."""
    other = copy_of(tiny_beir, tmp_path)
    qrels = other / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q-none\tsolar-0\t1\nq1\tno-such-doc\t1\nq3\tgone\t1\n")
    args = ["eval", "beir", "--index", str(tiny_index), "--metric", "recall@10", "-k", "10"]
    clean = runner.invoke(app, [*args, "--dataset", str(tiny_beir), "--out", str(tmp_path / "clean")])
    assert clean.exit_code == 0, clean.output
    with caplog.at_level(logging.WARNING, logger="retrieval_kd.evaluation"):
        result = runner.invoke(app, [*args, "--dataset", str(other), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "e" / "ix" / "metrics.json").read_text())
    base = json.loads((tmp_path / "clean" / "ix" / "metrics.json").read_text())
    assert record["qrels_unmatched"] == {"queries_not_in_topics": 1, "judgements_not_in_corpus": 2}
    assert base["qrels_unmatched"] == {"queries_not_in_topics": 0, "judgements_not_in_corpus": 0}
    assert record["queries"] == base["queries"] == 8  # q-none is not run, nor scored 0
    # the metrics are those of the qrels with q-none left out and the two strangers kept
    expected = {q: dict(judged) for q, judged in load_dataset(str(tiny_beir)).qrels.items()}
    expected["q1"]["no-such-doc"] = 1
    expected["q3"]["gone"] = 1
    run = read_trec(tmp_path / "e" / "ix" / "run.trec")
    assert record["metrics"] == evaluate(expected, run, ["recall@10"])
    assert record["metrics"]["recall@10"] < base["metrics"]["recall@10"]
    assert [r.getMessage() for r in caplog.records] == [
        f"qrels of {other}:test: 1 judged query id(s) with no text in the topics (left out of the "
        "metrics, e.g. ['q-none']); 2 judgement(s) of documents absent from the corpus (kept: relevant, "
        "never retrievable, e.g. ['no-such-doc', 'gone'])"
    ]


def test_rows_take_the_names_given(tiny_index: Path, tiny_beir: Path, tmp_path: Path) -> None:
    """`-i NAME=DIR` (and `-m` / `-r` likewise) names a row, its folder and its run tag; a folder
    given whole keeps its basename; the same index under two names scores the same. The printed
    table is whole when the output is not a terminal (rich's 80 columns cut it to "0.39…")."""
    out = tmp_path / "e"
    args = ["eval", "beir", "-d", str(tiny_beir), "-o", str(out), "--metric", "recall@10", "-k", "10"]
    name = "distilled-on-the-tiny-corpus-with-a-long-name"
    result = runner.invoke(app, [*args, "-i", f"{name}={tiny_index}", "-i", str(tiny_index)])
    assert result.exit_code == 0, result.output
    table = (out / "compare.md").read_text()
    assert f"| a | {name} |" in table and "| b | ix |" in table
    named = json.loads((out / name / "metrics.json").read_text())
    whole = json.loads((out / "ix" / "metrics.json").read_text())
    assert named["metrics"] == whole["metrics"] and named["queries"] == 8
    assert {line.split()[-1] for line in (out / name / "run.trec").read_text().splitlines()} == {name}
    printed = [line for line in result.output.splitlines() if f" {name} " in line]
    assert len(printed) == 1 and f" {named['metrics']['recall@10']:.4f} " in printed[0]
    cells = [cell(key, named["cost"].get(key)) for key in shown({name: named["cost"]})]
    assert len(cells) >= 5 and all(f" {c} " in printed[0] for c in cells)  # every cost column
    assert fails(*args, "-m", "my model=x") == (
        "error: --model 'my model=x': the name 'my model' must be one word of letters, digits and "
        "_ . + - (e.g. 'bm25', 'dense-student'); expected VALUE or NAME=VALUE"
    )
    assert fails(*args, "-r", "lexical=") == (
        "error: --retriever 'lexical=': nothing after '='; expected VALUE or NAME=VALUE"
    )


def test_every_integer_option_has_a_range() -> None:
    """Batch sizes, k, negatives, max-queries, token limits, part sizes: all refuse values below 1
    (typer checks before the command runs)."""
    import typer

    def options(command: object, prefix: str) -> list[tuple[str, object]]:
        subs = getattr(command, "commands", None)
        if subs:
            return [o for name, sub in subs.items() for o in options(sub, f"{prefix} {name}")]
        return [(f"{prefix} {p.name}", p) for p in getattr(command, "params", [])]

    ints = [
        (name, p)
        for name, p in options(typer.main.get_command(app), "rkd")
        if p.type_descriptor.annotation is int
    ]
    assert len(ints) >= 10  # the walk found the commands (more are added over time)
    # a port may be 0 (the system picks a free one); everything else counts from 1
    assert {name: p.min for name, p in ints} == {name: 0 if name.endswith(" port") else 1 for name, _ in ints}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "abc"}, "error: environment variable RANK='abc': expected an integer (torchrun sets it)"),
        ({"RANK": "3", "WORLD_SIZE": "2"}, "error: RANK=3, WORLD_SIZE=2: need 0 <= RANK < WORLD_SIZE"),
    ],
)
def test_bad_torchrun_environment_is_one_line(
    tiny_index: Path, tiny_beir: Path, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            "beir",
            "--index",
            str(tiny_index),
            "--dataset",
            str(tiny_beir),
            "--out",
            str(tmp_path / "e"),
        ],
        env=env,
    )
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == message
