"""Small CPU batches run packed (students.packing): one row of Σ lengths positions, outputs equal
to the padded batch's and to sentence-transformers' own encode; a model that packing would change
is checked once, found out, and left padded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval_kd.students import build_student, packing
from retrieval_kd.students.sparse_vectors import to_csr

# 3, 12, 6 and 2 words: one batch of four whose padding is most of it
QUERIES = [
    "why does iron rust",
    "how do stock markets move when interest rates rise sharply in a single year",
    "bread dough rises with yeast",
    "water oxygen",
]


def _shapes(model: Any) -> list[tuple[int, ...]]:
    """Records the input_ids shape of every forward pass of ``model``'s transformer
    (sentence-transformers calls its ``forward`` directly, past any module hook)."""
    seen: list[tuple[int, ...]] = []
    auto = model[0].auto_model
    forward = auto.forward

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    auto.forward = recording
    return seen


@pytest.mark.parametrize("kind", ["dense", "splade"])
def test_a_small_batch_runs_packed_with_the_padded_outputs(
    kind: str, tiny_model: Path, tiny_mlm: Path
) -> None:
    student = build_student(kind, str(tiny_model if kind == "dense" else tiny_mlm), device="cpu")
    model = student.model
    lengths = [len(x) for x in model.tokenizer(QUERIES)["input_ids"]]
    costs = packing.flop_costs(model)
    assert costs is not None and packing.worth_packing(lengths, costs)
    seen = _shapes(model)
    first = student.encode_queries(QUERIES, batch_size=4)
    second = student.encode_queries(QUERIES, batch_size=4)
    total, width = sum(lengths), max(lengths)
    # first call: packed, then the padded batch once to check it; after that packed alone
    assert seen == [(1, total), (4, width), (1, total)]
    assert packing._CHECKED[model] == {(None, "query"): True}
    if kind == "dense":
        want = model.encode_query(QUERIES, batch_size=4, convert_to_numpy=True)
        np.testing.assert_allclose(first, want, atol=1e-5)
        np.testing.assert_array_equal(first, second)
    else:
        want = to_csr(model.encode_query(QUERIES, batch_size=4), student.dim).toarray()
        np.testing.assert_allclose(first.toarray(), want, atol=1e-4)
        np.testing.assert_array_equal(first.toarray(), second.toarray())


def test_a_model_that_ignores_positions_is_found_out_and_left_padded(tiny_model: Path) -> None:
    student = build_student("dense", str(tiny_model), device="cpu")
    model = student.model
    auto = model[0].auto_model
    forward = auto.forward

    def without_positions(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("position_ids", None)  # as a model with no position_ids argument would
        return forward(*args, **kwargs)

    auto.forward = without_positions
    seen = _shapes(model)
    got = student.encode_queries(QUERIES, batch_size=4)
    again = student.encode_queries(QUERIES, batch_size=4)
    lengths = [len(x) for x in model.tokenizer(QUERIES)["input_ids"]]
    # packed once (wrong: positions run on across texts), checked against padded, then padded only
    assert seen == [(1, sum(lengths)), (4, max(lengths)), (4, max(lengths))]
    assert packing._CHECKED[model] == {(None, "query"): False}
    want = model.encode_query(QUERIES, batch_size=4, convert_to_numpy=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(again, want, atol=1e-5)


def test_one_text_and_long_texts_are_not_packed(tiny_model: Path) -> None:
    student = build_student("dense", str(tiny_model), device="cpu")
    model = student.model
    seen = _shapes(model)
    student.encode_queries(QUERIES[:1], batch_size=4)
    # two long texts, the second about 60% of the first: packed, the row would save a fifth of the
    # positions but attend over more pairs, which the tiny model's narrow layers make the larger cost
    long = ["iron rust " * 60, "bread yeast " * 19]
    lengths = [len(x) for x in model.tokenizer(long, truncation=True)["input_ids"]]
    assert lengths[1] < 0.7 * lengths[0]  # a third of the second row is padding
    costs = packing.flop_costs(model)
    assert costs is not None and not packing.worth_packing(lengths, costs)
    assert packing.worth_packing([lengths[0], 10], costs)  # a short second text would be packed
    got = student.encode_documents(long, batch_size=2)
    one = len(model.tokenizer(QUERIES[0])["input_ids"])
    assert seen == [(1, one), (2, max(lengths))]  # one text has no padding; long ones stay padded
    assert model not in packing._CHECKED  # never packed, so never checked
    want = model.encode_document(long, batch_size=2, convert_to_numpy=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
