from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.indexes import INDEXES, load_index
from retrieval_kd.indexes.faiss_index import FaissIndex
from retrieval_kd.protocols import Index


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def brute_force(docs: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def ids(n: int) -> list[str]:
    return [f"d{i}" for i in range(n)]


def test_flat_hand_made_order_and_scores() -> None:
    index = FaissIndex(dim=3)
    docs = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    index.add(["a", "b", "c", "d"], docs)
    run = index.search(["q"], np.array([[3, 2, 1]], dtype=np.float32), k=3)
    # q·a = 3, q·b = 2, q·c = 5, q·d = 1
    assert list(run["q"].items()) == [("c", 5.0), ("a", 3.0), ("b", 2.0)]
    assert isinstance(index, Index)
    assert index.manifest["count"] == 4


def test_k_is_clipped_to_index_size() -> None:
    index = FaissIndex(dim=2, device="cpu")
    index.add(["a", "b"], np.eye(2, dtype=np.float32))
    run = index.search(["q1", "q2"], np.array([[1, 2], [2, 1]], dtype=np.float32), k=100)
    assert run == {"q1": {"b": 2.0, "a": 1.0}, "q2": {"a": 2.0, "b": 1.0}}
    assert index.backend == "faiss-cpu"


def test_flat_equals_numpy_brute_force() -> None:
    docs, queries = random_unit(500, 32, seed=0), random_unit(20, 32, seed=1)
    index = FaissIndex(dim=32, device="cpu")
    index.add(ids(500), docs)
    run = index.search([f"q{i}" for i in range(20)], queries, k=10)
    order, scores = brute_force(docs, queries, 10)
    for i in range(20):
        assert list(run[f"q{i}"]) == [f"d{j}" for j in order[i]]
        np.testing.assert_allclose(list(run[f"q{i}"].values()), scores[i], rtol=1e-5, atol=1e-6)


def test_hnsw_recall_against_brute_force() -> None:
    docs, queries = random_unit(2000, 32, seed=2), random_unit(50, 32, seed=3)
    index = FaissIndex(dim=32, factory="HNSW32", device="cpu", ef_search=64)
    index.add(ids(2000), docs)
    run = index.search([f"q{i}" for i in range(50)], queries, k=10)
    order, _ = brute_force(docs, queries, 10)
    hits = sum(len(set(run[f"q{i}"]) & {f"d{j}" for j in order[i]}) for i in range(50))
    assert hits / (50 * 10) >= 0.9


def test_ivf_with_all_lists_probed_is_exact() -> None:
    docs, queries = random_unit(1000, 16, seed=4), random_unit(10, 16, seed=5)
    index = FaissIndex(dim=16, factory="IVF16,Flat", device="cpu", nprobe=16)
    index.add(ids(1000), docs)
    run = index.search([f"q{i}" for i in range(10)], queries, k=5)
    order, _ = brute_force(docs, queries, 5)
    assert [list(run[f"q{i}"]) for i in range(10)] == [[f"d{j}" for j in row] for row in order]


@pytest.mark.parametrize(("factory", "needed"), [("IVF64,Flat", 64), ("IVF4,PQ4", 256), ("PQ4", 256)])
def test_too_few_training_vectors(factory: str, needed: int) -> None:
    index = FaissIndex(dim=16, factory=factory)
    index.add(ids(10), random_unit(10, 16, seed=6))  # held back until the index can train
    with pytest.raises(RkdError, match=rf"needs at least {needed} vectors to train, got 10"):
        index.search(["q"], random_unit(1, 16, seed=7), k=1)
    assert len(index) == 0


def test_untrained_index_holds_vectors_until_train_size() -> None:
    index = FaissIndex.create("stu", {"factory": "IVF4,Flat", "train_size": 300, "nprobe": 4})
    for start in range(0, 400, 100):  # trains once 300 have arrived, on all 300
        index.add([f"d{i}" for i in range(start, start + 100)], random_unit(100, 8, seed=start))
        assert len(index._pending) == (0 if start >= 200 else start // 100 + 1)
    assert index._index.is_trained and index._index.ntotal == 400 and index.dim == 8
    run = index.search(["q"], random_unit(100, 8, seed=300)[50:51], k=1)
    assert list(run["q"]) == ["d350"]


def test_create_refuses_unknown_options() -> None:
    with pytest.raises(RkdError, match=r"unknown faiss index option\(s\) \['factroy'\]; choose from"):
        FaissIndex.create("stu", {"factroy": "Flat"})


def test_bad_factory_quotes_faiss_and_gives_examples() -> None:
    with pytest.raises(RkdError) as e:
        FaissIndex(dim=8, factory="IVFx")
    message = str(e.value)
    assert "bad faiss index factory 'IVFx'" in message
    assert "could not parse index string IVFx" in message
    assert "'HNSW32'" in message and "Error in" not in message


def test_duplicate_ids_and_dim_mismatch() -> None:
    index = FaissIndex(dim=4)
    with pytest.raises(RkdError, match="duplicate document id 'a'"):
        index.add(["a", "a"], random_unit(2, 4, seed=7))
    index.add(["a", "b"], random_unit(2, 4, seed=7))
    with pytest.raises(RkdError, match="duplicate document id 'b'"):
        index.add(["b", "c"], random_unit(2, 4, seed=8))
    with pytest.raises(RkdError, match=r"shape \(2, 5\); this index needs \[N, 4\]"):
        index.add(["c", "d"], random_unit(2, 5, seed=8))
    with pytest.raises(RkdError, match=r"shape \(1, 3\)"):
        index.search(["q"], random_unit(1, 3, seed=9), k=1)
    with pytest.raises(RkdError, match="3 document ids but 2 document vectors"):
        index.add(["c", "d", "e"], random_unit(2, 4, seed=8))
    assert index.doc_ids == ["a", "b"]


def test_save_load_round_trip(tmp_path: Path) -> None:
    docs, queries = random_unit(1000, 32, seed=10), random_unit(15, 32, seed=11)
    index = FaissIndex(dim=32, factory="IVF16,PQ8", student_fingerprint="stu-A", nprobe=4)
    index.add(ids(1000), docs)
    qids = [f"q{i}" for i in range(15)]
    before = index.search(qids, queries, k=10)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "doc_ids.json",
        "index.faiss",
        "manifest.json",
    ]

    loaded = load_index(tmp_path / "idx")
    assert isinstance(loaded, FaissIndex)
    files = loaded.manifest.pop("files")  # the checksums recorded at save, checked on load
    assert loaded.manifest == index.manifest
    assert {name: f["bytes"] for name, f in files.items()} == {
        name: (tmp_path / "idx" / name).stat().st_size for name in ("doc_ids.json", "index.faiss")
    }
    assert loaded.manifest["count"] == 1000 and loaded.manifest["kind"] == "faiss"
    loaded.nprobe = 4
    assert loaded.search(qids, queries, k=10) == before


def test_save_twice_overwrites(tmp_path: Path) -> None:
    index = FaissIndex(dim=2)
    index.add(["a"], np.array([[1, 0]], dtype=np.float32))
    index.save(tmp_path)
    index.add(["b"], np.array([[0, 1]], dtype=np.float32))
    index.save(tmp_path)
    assert FaissIndex.load(tmp_path).doc_ids == ["a", "b"]


def test_check_encoder_refuses_other_student(tmp_path: Path) -> None:
    index = FaissIndex(dim=2, student_fingerprint="stu-A")
    index.add(["a"], np.array([[1, 0]], dtype=np.float32))
    index.save(tmp_path / "idx")
    loaded = FaissIndex.load(tmp_path / "idx")
    loaded.check_encoder("stu-A")
    with pytest.raises(RkdError) as e:
        loaded.check_encoder("stu-B")
    assert str(e.value) == (
        f"index {tmp_path / 'idx'} was built with student stu-A; these queries come from stu-B: "
        "encode queries with the same student, or rebuild the index with `rkd index`"
    )
    FaissIndex(dim=2).check_encoder("anything")  # no fingerprint recorded: nothing to check


def test_load_index_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(RkdError) as e:
        load_index(tmp_path / "nope")
    assert str(e.value) == (
        f"{tmp_path / 'nope'}: not an rkd index (no manifest.json); build one with `rkd index`"
    )


def test_load_index_unknown_kind(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": "rkd-index/1", "kind": "annoy"}')
    # the choices listed are the registry's, whatever kinds it holds
    kinds = re.escape(str(INDEXES.names()))
    with pytest.raises(DataError, match=rf"unknown index kind 'annoy'; choose from {kinds}"):
        load_index(tmp_path)
    assert {"faiss", "sparse", "maxsim", "plaid"} <= set(INDEXES.names())


def test_load_inconsistent_folder(tmp_path: Path) -> None:
    index = FaissIndex(dim=2)
    index.add(["a", "b"], np.eye(2, dtype=np.float32))
    index.save(tmp_path)
    (tmp_path / "doc_ids.json").write_text('["a"]')
    with pytest.raises(DataError, match=r"doc_ids\.json: damaged \(5 bytes, 17 recorded in manifest\.json"):
        FaissIndex.load(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["files"]  # as written before rkd recorded checksums: the count check remains
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"index\.faiss holds 2 vectors, doc_ids\.json 1 ids.*inconsistent"):
        FaissIndex.load(tmp_path)


@pytest.mark.skipif(Path("/proc/driver/nvidia/version").exists(), reason="a CUDA driver makes auto try torch")
def test_cpu_search_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from retrieval_kd.indexes.faiss_index import FaissIndex\n"
        "i = FaissIndex(2); i.add(['a'], np.ones((1, 2), np.float32)); i.search(['q'], np.ones((1, 2)), 1)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_imports_are_light() -> None:
    code = (
        "import sys\n"
        "import retrieval_kd.indexes, retrieval_kd.eval\n"
        "heavy = {'torch', 'ranx', 'faiss', 'numba'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
def test_gpu_backend_equals_cpu() -> None:
    import faiss

    docs, queries = random_unit(5000, 64, seed=12), random_unit(300, 64, seed=13)
    qids = [f"q{i}" for i in range(300)]
    cpu = FaissIndex(dim=64, device="cpu")
    gpu = FaissIndex(dim=64, device="auto")
    for index in (cpu, gpu):
        index.add(ids(5000), docs)
    expected = cpu.search(qids, queries, k=20)
    got = gpu.search(qids, queries, k=20)
    assert cpu.backend == "faiss-cpu"
    assert gpu.backend == ("faiss-gpu" if faiss.get_num_gpus() > 0 else "torch-cuda")
    for qid in qids:
        assert list(got[qid]) == list(expected[qid])
        np.testing.assert_allclose(
            list(got[qid].values()), list(expected[qid].values()), rtol=1e-5, atol=1e-5
        )
    gpu.add(["extra"], 10 * docs[:1])  # the cached GPU copy must be refreshed after an add
    assert next(iter(gpu.search(["q"], docs[:1], k=1)["q"])) == "extra"


def test_device_choices() -> None:
    with pytest.raises(RkdError, match=r"unknown index device 'gpu'; choose from \['auto', 'cpu', 'cuda'\]"):
        FaissIndex(dim=2, device="gpu")


@pytest.mark.skipif(_cuda(), reason="checks the refusal on a machine without CUDA")
def test_cuda_device_without_cuda_refuses() -> None:
    index = FaissIndex(dim=2, device="cuda")
    index.add(["a"], np.ones((1, 2), dtype=np.float32))
    with pytest.raises(RkdError, match="device 'cuda' asked for"):
        index.search(["q"], np.ones((1, 2), dtype=np.float32), k=1)
