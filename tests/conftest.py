from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = Path(__file__).parent / "data"
# ../shared/data beside the checkout (DESIGN.md); RKD_SHARED_DATA points elsewhere.
SHARED = Path(os.environ.get("RKD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    """ir_datasets reads IR_DATASETS_HOME once, at import, and writes its docstore beside the
    data: point it at a private temporary copy of the shared cache before anything imports it."""
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="rkd-irds-"))
    if (SHARED / "ir_datasets").is_dir():
        shutil.copytree(SHARED / "ir_datasets", home, dirs_exist_ok=True)
    os.environ["IR_DATASETS_HOME"] = str(home)
    config._rkd_irds_home = home  # type: ignore[attr-defined]
    # rkd's own cache (model-file hashes): a private one, never the user's ~/.cache/rkd
    cache = Path(tempfile.mkdtemp(prefix="rkd-cache-"))
    os.environ["RKD_CACHE_DIR"] = str(cache)
    config._rkd_cache = cache  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    for attr in ("_rkd_irds_home", "_rkd_cache"):
        folder = getattr(config, attr, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_beir() -> Path:
    """A hand-made BEIR folder: 32 docs in 8 topics, 16 queries (train and test qrels)."""
    return DATA / "tiny_beir"


@pytest.fixture(scope="session")
def _tiny_model_master(tmp_path_factory: pytest.TempPathFactory, tiny_beir: Path) -> Path:
    texts = [
        json.loads(line)["text"]
        for name in ("corpus.jsonl", "queries.jsonl")
        for line in (tiny_beir / name).read_text().splitlines()
    ]
    texts += [json.loads(line)["title"] for line in (tiny_beir / "corpus.jsonl").read_text().splitlines()]
    from retrieval_kd.testing import tiny_bert_folder

    return tiny_bert_folder(tmp_path_factory.mktemp("tiny"), texts, seed=0)


@pytest.fixture
def tiny_model(_tiny_model_master: Path, tmp_path: Path) -> Path:
    """A seeded 2-layer BERT sentence-transformers folder, built once, copied per test."""
    dst = tmp_path / "tiny"
    shutil.copytree(_tiny_model_master.parent, dst)  # the ST folder and the raw BERT beside it
    return dst / "model"


@pytest.fixture(scope="session")
def irds_home() -> Path:
    """The private copy of the shared ir_datasets cache made in pytest_configure."""
    home = Path(os.environ["IR_DATASETS_HOME"])
    if not (home / "beir" / "scifact" / "source.zip").is_file():
        pytest.fail(f"shared data missing: expected {SHARED / 'ir_datasets'} beside the repo")
    return home


def write_tiny_recipe(path: Path, tiny_beir: Path, model: Path, loss: str = "kl") -> Path:
    """The tiny recipe the CLI and stage tests run: a bi-encoder teacher, 4 mined negatives, a
    1-layer student trained 3 epochs on the tiny fixture."""
    path.write_text(
        f"""
name = "tiny"
[data]
train = "{tiny_beir}:train"
eval = "{tiny_beir}:test"
[teacher]
kind = "bi-encoder"
model = "{model}"
[mine]
negatives = 4
[student]
model = "{model}"
num_layers = 1
[train]
loss = "{loss}"
loss_options = {{ student_temperature = 0.05 }}
negatives = 3
epochs = 3
batch_size = 4
lr = 3e-3
warmup = 0.0
[eval]
metrics = ["ndcg@10", "recall@10", "mrr@10"]
k = 10
"""
    )
    return path


@pytest.fixture
def tiny_recipe(tmp_path: Path, tiny_beir: Path, tiny_model: Path) -> Path:
    """:func:`write_tiny_recipe` at ``tmp_path / "r.toml"``."""
    return write_tiny_recipe(tmp_path / "r.toml", tiny_beir, tiny_model)
