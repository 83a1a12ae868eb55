"""Micro-batching: concurrent requests share one query-encoder pass.

Requests wait in an asyncio queue. A single worker takes the first one, then everything already
queued, then waits at most ``max_wait`` seconds for more, never past ``max_batch`` queries; the
whole batch goes to the search function once (one encode, one index search), in a worker thread,
and each request gets its own rows back. While a batch runs, the next one fills, so under load
batches grow by themselves and at low load a request waits at most ``max_wait``.

With batching off each request is searched alone, on the same worker thread: the two modes
differ only in how many requests share an encode.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

from retrieval_kd.types import Run

SearchFn = Callable[[Mapping[str, str], int], Run]
"""``(query id → text, k) → Run``: :meth:`retrieval_kd.api.Retriever.search`."""


class Overloaded(Exception):
    """The queue is full: the server sheds this request rather than queue without bound."""


@dataclass
class _Pending:
    texts: list[str]
    k: int
    future: asyncio.Future[list[dict[str, float]]] | None = field(default=None, repr=False)


class MicroBatcher:
    """Gathers concurrent searches into batches for one search function.

    Args:
        search: runs one batch: query ids to texts and ``k``, returning the Run.
        executor: where ``search`` runs (one thread: the encoder and the index are not shared
            between threads, and two encodes at once would only fight over the cores).
        enabled: False searches each request alone.
        max_batch: at most this many queries per batch (a larger request runs alone, whole).
        max_wait: seconds the first request of a batch waits for company.
        max_queue: requests waiting at most; past it :meth:`search` raises :class:`Overloaded`.
        on_batch: called with (queries, requests) of every batch run, for metrics.

    Example:
        >>> import asyncio
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> calls = []
        >>> def search(queries, k):
        ...     calls.append(len(queries))
        ...     return {q: {t: 1.0} for q, t in queries.items()}
        >>> async def main():
        ...     b = MicroBatcher(search, ThreadPoolExecutor(1), max_wait=0.05)
        ...     out = await asyncio.gather(b.search(["a"], 1), b.search(["b", "c"], 1))
        ...     await b.close()
        ...     return out
        >>> asyncio.run(main()), calls
        ([[{'a': 1.0}], [{'b': 1.0}, {'c': 1.0}]], [3])
    """

    def __init__(
        self,
        search: SearchFn,
        executor: Executor,
        enabled: bool = True,
        max_batch: int = 32,
        max_wait: float = 0.002,
        max_queue: int = 1024,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self._search = search
        self._executor = executor
        self.enabled = enabled
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def search(self, texts: list[str], k: int) -> list[dict[str, float]]:
        """The top ``k`` of each text, in order: ``[{doc_id: score, ...}, ...]``."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return (await loop.run_in_executor(self._executor, self._run, [_Pending(texts, k)]))[0]
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work())
        if self._queue.qsize() >= self.max_queue:
            raise Overloaded(f"{self._queue.qsize()} requests are waiting (limit {self.max_queue})")
        future: asyncio.Future[list[dict[str, float]]] = loop.create_future()
        self._queue.put_nowait(_Pending(texts, k, future))
        return await future

    async def close(self) -> None:
        """Stops the worker; requests still queued fail."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))

    async def _gather(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        batch = [await queue.get()]
        size = len(batch[0].texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            try:
                if queue.empty():
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    nxt = await asyncio.wait_for(queue.get(), remaining)
                else:
                    nxt = queue.get_nowait()
            except TimeoutError:
                break
            if size + len(nxt.texts) > self.max_batch:
                queue.put_nowait(nxt)  # it goes first in a later batch (at the back: fair enough)
                break
            batch.append(nxt)
            size += len(nxt.texts)
        return batch

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather(self._queue)
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch)
            except Exception as e:  # every request of the batch learns why
                for pending in batch:
                    if pending.future is not None and not pending.future.done():
                        pending.future.set_exception(e)
                continue
            for pending, result in zip(batch, results, strict=True):
                if (
                    pending.future is not None and not pending.future.done()
                ):  # a client that went away cancelled its future
                    pending.future.set_result(result)

    def _run(self, batch: list[_Pending]) -> list[list[dict[str, float]]]:
        """One call of the search function for the whole batch, at the largest ``k`` asked
        (each request keeps its own top ``k`` of that ranking)."""
        queries = {f"{i}:{j}": text for i, p in enumerate(batch) for j, text in enumerate(p.texts)}
        run = self._search(queries, max(p.k for p in batch))
        if self._on_batch is not None:
            self._on_batch(len(queries), len(batch))
        return [
            [_top(run.get(f"{i}:{j}", {}), p.k) for j in range(len(p.texts))] for i, p in enumerate(batch)
        ]


def _top(hits: Mapping[str, float], k: int) -> dict[str, float]:
    """The ``k`` best hits, best first (a stable sort keeps the index's order among ties)."""
    return dict(sorted(hits.items(), key=lambda hit: -hit[1])[:k])
