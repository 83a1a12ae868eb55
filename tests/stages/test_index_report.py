"""`rkd index` says where the time went and what the index costs: build time split into tokenizing,
computing, adding and writing, size on disk and queries per second, printed and recorded in the
index manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.data import load_dataset
from retrieval_kd.io import atomic_write_json
from retrieval_kd.stages.index import QPS_QUERIES, STATS_KEY
from retrieval_kd.students import open_student
from retrieval_kd.timing import Phases, size, timed_preprocess


def test_rkd_index_prints_and_records_build_time_size_and_qps(
    tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ix"
    dataset = f"{tiny_beir}:test"
    result = CliRunner().invoke(app, ["index", "-m", str(tiny_model), "-d", dataset, "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    build = manifest[STATS_KEY]
    data = load_dataset(dataset)
    docs, queries = data.docs, data.queries
    assert build["items"] == len(docs) == manifest["count"] == 32
    assert set(build["phases"]) == {"tokenize", "compute", "add", "write"}
    assert all(seconds > 0 for seconds in build["phases"].values())
    assert sum(build["phases"].values()) <= build["seconds"] + 0.003  # total rounded to 1 ms
    assert build["per_s"] == round(32 / build["seconds"], 1)
    # the size is the folder as saved: every data file plus the manifest before the build stats were added
    data_files = sum((out / name).stat().st_size for name in manifest["files"])
    atomic_write_json(tmp_path / "before.json", {k: v for k, v in manifest.items() if k != STATS_KEY})
    assert build["bytes"] == data_files + (tmp_path / "before.json").stat().st_size
    assert build["qps_queries"] == min(len(queries), QPS_QUERIES) > 0 and build["qps"] > 0
    # the encode record counts encoding only (tokenize + compute), as evaluation's docs/s column
    encode = manifest["encode"]["seconds"]
    assert abs(encode - build["phases"]["tokenize"] - build["phases"]["compute"]) < 2e-3
    line = re.search(
        r"32 docs in [\d.]+ s \([\d.,]+ docs/s\): "
        r"tokenize \d+%, compute \d+%, add \d+%, write \d+%, other \d+%",
        result.output,
    )
    assert line is not None, result.output
    assert f"{size(build['bytes'])} on disk" in result.output
    assert f"{build['qps']:,.0f} QPS ({build['qps_queries']} queries, k=10)" in result.output


def test_timed_preprocess_times_the_tokenizer_and_leaves_the_model_as_it_was(tiny_model: Path) -> None:
    student = open_student(str(tiny_model))
    model = student.model  # type: ignore[attr-defined]
    calls: list[int] = []
    original = type(model).preprocess

    def counting(self: object, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(self, *args, **kwargs)

    type(model).preprocess = counting  # type: ignore[method-assign]
    try:
        phases = Phases()
        with timed_preprocess(model, phases):
            student.encode_documents([f"text {i}" for i in range(10)], batch_size=4)
        assert len(calls) == 1  # the check of list tokenizing (encode_budgeted), through the timer
        assert phases.seconds["tokenize"] > 0
        assert "preprocess" not in vars(model) and "rkd_tokenize_timer" not in vars(model)
        before = phases.seconds["tokenize"]
        with timed_preprocess(model, phases):
            student.encode_documents(["after"], batch_size=4)  # id lists, timed through the hook
        assert len(calls) == 1 and phases.seconds["tokenize"] > before
        student.encode_documents(["after"], batch_size=4)
        assert len(calls) == 1 and set(phases.seconds) == {"tokenize"}
    finally:
        type(model).preprocess = original  # type: ignore[method-assign]


def test_rkd_index_dtype_is_recorded_and_queries_follow_it(
    tiny_beir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch

    from retrieval_kd.artifacts import stage_fingerprint
    from retrieval_kd.serve.systems import open_retriever

    dataset = f"{tiny_beir}:test"
    runner = CliRunner()
    for dtype in ("float32", "bfloat16"):
        args = ["index", "-m", str(tiny_model), "-d", dataset, "-o", str(tmp_path / dtype), "--dtype", dtype]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    full, half = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("float32", "bfloat16"))
    assert full["student_dtype"] == "float32" and half["student_dtype"] == "bfloat16"
    assert stage_fingerprint(tmp_path / "float32") != stage_fingerprint(tmp_path / "bfloat16")
    # the query encoder is reopened in the dtype the index records
    a, b = open_retriever(tmp_path / "float32"), open_retriever(tmp_path / "bfloat16")
    assert next(b.student.model.parameters()).dtype == torch.bfloat16  # type: ignore[attr-defined]
    assert a.student.fingerprint() != b.student.fingerprint()  # it hashes the weights as they are
    texts = [d.full_text() for d in load_dataset(dataset).docs.values()]
    va, vb = a.student.encode_documents(texts), b.student.encode_documents(texts)  # type: ignore[attr-defined]
    assert va.dtype == vb.dtype == np.float32 and 0 < np.abs(va - vb).max() < 0.05
    assert ((va * vb).sum(1) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)).min() > 0.999
    assert len(b.search(["why does iron rust"], k=3)["q0"]) == 3

    bad = runner.invoke(
        app, ["index", "-m", str(tiny_model), "-d", dataset, "-o", str(tmp_path / "x"), "--dtype", "fp8"]
    )
    assert bad.exit_code == 2, bad.output
    assert "unknown dtype 'fp8'; choose from ['float32', 'bfloat16', 'float16']" in bad.output
