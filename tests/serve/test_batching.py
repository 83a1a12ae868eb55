"""Micro-batching over a real Retriever: concurrent requests share one encode, each gets exactly
what it would have got alone, batches respect their size bound, failures reach every request of
the batch and the batcher goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from retrieval_kd import Retriever
from retrieval_kd.serve.batching import MicroBatcher, Overloaded
from retrieval_kd.types import Run

Rows = list[dict[str, float]]
TEXTS = [
    "why does iron rust",
    "how do vaccines work",
    "what makes bread rise",
    "why is the sky blue",
    "how do plants grow",
    "what causes tides",
]


class Recording:
    """The Retriever's search, recording the size of every call."""

    def __init__(self, retriever: Retriever) -> None:
        self.retriever = retriever
        self.calls: list[tuple[int, int]] = []

    def __call__(self, queries: Mapping[str, str], k: int) -> Run:
        self.calls.append((len(queries), k))
        return self.retriever.search(queries, k)


@pytest.fixture(scope="module")
def retriever(served_dirs: dict[str, Path]) -> Retriever:
    return Retriever(Path(str(served_dirs["big"]) + "-student"), served_dirs["big"])


def run_concurrently(
    batcher: MicroBatcher, requests: list[tuple[list[str], int]]
) -> list[list[dict[str, float]]]:
    async def main() -> list[list[dict[str, float]]]:
        try:
            return list(await asyncio.gather(*(batcher.search(texts, k) for texts, k in requests)))
        finally:
            await batcher.close()

    return asyncio.run(main())


def alone(retriever: Retriever, texts: list[str], k: int) -> Rows:
    run = retriever.search(texts, k)
    return [run[f"q{i}"] for i in range(len(texts))]


def assert_same(got: Rows, expected: Rows) -> None:
    """Same ids in the same order; scores equal up to float noise (a padded batch encodes each
    text with sums in another order)."""
    assert [list(g) for g in got] == [list(e) for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert list(g.values()) == pytest.approx(list(e.values()), abs=1e-6)


def test_concurrent_requests_share_one_encode_and_get_their_own_answers(retriever: Retriever) -> None:
    search = Recording(retriever)
    batcher = MicroBatcher(search, ThreadPoolExecutor(1), max_batch=32, max_wait=0.5)
    requests = [([TEXTS[0]], 3), (TEXTS[1:4], 5), ([TEXTS[4]], 1), ([TEXTS[5], TEXTS[0]], 32)]
    got = run_concurrently(batcher, requests)
    assert search.calls == [(7, 32)]  # one encode for the 7 queries, at the largest k asked
    for (texts, k), answer in zip(requests, got, strict=True):
        assert_same(answer, alone(retriever, texts, k))


def test_batches_stay_within_max_batch(retriever: Retriever) -> None:
    search = Recording(retriever)
    batcher = MicroBatcher(search, ThreadPoolExecutor(1), max_batch=4, max_wait=0.2)
    requests = [([t], 2) for t in TEXTS] + [(TEXTS[:5], 2)]  # 6 single queries, then one of 5
    got = run_concurrently(batcher, requests)
    assert [n for n, _ in search.calls] == [4, 2, 5]  # a request larger than the bound runs alone, whole
    for text, answer in zip(TEXTS, got, strict=False):
        assert_same(answer, alone(retriever, [text], 2))
    assert_same(got[6], alone(retriever, TEXTS[:5], 2))


def test_batching_off_searches_each_request_alone(retriever: Retriever) -> None:
    search = Recording(retriever)
    batcher = MicroBatcher(search, ThreadPoolExecutor(1), enabled=False)
    got = run_concurrently(batcher, [([t], 2) for t in TEXTS[:3]])
    assert search.calls == [(1, 2)] * 3
    assert got == [alone(retriever, [t], 2) for t in TEXTS[:3]]  # alone both ways: the same bits


def test_a_failed_batch_fails_its_requests_and_the_next_batch_runs(retriever: Retriever) -> None:
    calls = []

    def flaky(queries: Mapping[str, str], k: int) -> Run:
        calls.append(len(queries))
        if len(calls) == 1:
            raise RuntimeError("encoder exploded")
        return retriever.search(queries, k)

    batcher = MicroBatcher(flaky, ThreadPoolExecutor(1), max_wait=0.2)

    async def main() -> tuple[list[object], Rows]:
        first = await asyncio.gather(
            batcher.search(["a"], 1), batcher.search(["b"], 1), return_exceptions=True
        )
        second = await batcher.search([TEXTS[0]], 2)
        await batcher.close()
        return list(first), second

    first, second = asyncio.run(main())
    assert [str(e) for e in first] == ["encoder exploded", "encoder exploded"]
    assert calls == [2, 1]
    assert second == alone(retriever, [TEXTS[0]], 2)


def test_a_full_queue_sheds_requests(retriever: Retriever) -> None:
    batcher = MicroBatcher(Recording(retriever), ThreadPoolExecutor(1), max_batch=1, max_wait=0, max_queue=2)

    async def main() -> list[object]:
        tasks = [asyncio.create_task(batcher.search([t], 1)) for t in TEXTS[:4]]
        out = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        return list(out)

    out = asyncio.run(main())
    shed = [o for o in out if isinstance(o, Overloaded)]
    assert len(shed) == 2 and "limit 2" in str(shed[0])  # the first two wait, the others are shed
    assert all(isinstance(o, list) for o in out if not isinstance(o, Overloaded))


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_batch must be >= 1, got 0"):
        MicroBatcher(lambda q, k: {}, ThreadPoolExecutor(1), max_batch=0)
    with pytest.raises(ValueError, match="max_wait must be >= 0"):
        MicroBatcher(lambda q, k: {}, ThreadPoolExecutor(1), max_wait=-1)
