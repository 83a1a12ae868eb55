from __future__ import annotations

import numpy as np
import pytest

from retrieval_kd.indexes.topk import torch_topk

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(("chunk", "doc_chunk"), [(1024, 1 << 20), (8, 50), (1, 7)])
def test_torch_topk_equals_numpy_argsort(chunk: int, doc_chunk: int) -> None:
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((37, 16)).astype(np.float32)
    scores, indices = torch_topk(
        torch.from_numpy(docs), torch.from_numpy(queries), k=7, chunk=chunk, doc_chunk=doc_chunk
    )
    full = queries.astype(np.float64) @ docs.astype(np.float64).T
    expected = np.argsort(-full, axis=1)[:, :7]
    assert indices.shape == (37, 7) and indices.dtype == torch.int64
    np.testing.assert_array_equal(indices.numpy(), expected)
    np.testing.assert_allclose(
        scores.numpy(), np.take_along_axis(full, expected, axis=1), rtol=1e-5, atol=1e-5
    )


def test_torch_topk_hand_made() -> None:
    docs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    scores, indices = torch_topk(docs, torch.tensor([[2.0, 1.0], [0.0, 3.0]]), k=3)
    assert scores.tolist() == [[3.0, 2.0, 1.0], [3.0, 3.0, 0.0]]
    assert indices[0].tolist() == [2, 0, 1]
    assert sorted(indices[1, :2].tolist()) == [1, 2] and indices[1, 2].item() == 0  # a tie: order free


def test_torch_topk_rejects_bad_k() -> None:
    docs = torch.zeros((3, 2))
    with pytest.raises(ValueError, match="k must be between 1 and the number of documents"):
        torch_topk(docs, torch.zeros((1, 2)), k=4)
    with pytest.raises(ValueError, match="shape mismatch"):
        torch_topk(docs, torch.zeros((1, 3)), k=1)
