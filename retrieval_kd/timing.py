"""Where a long stage's wall time goes: tokenizing, computing, writing.

``rkd score-teacher`` and ``rkd index`` end with one line such as::

    5,183 docs in 61.2 s (84.7 docs/s): tokenize 3%, compute 91%, add 1%, write 4%, other 1%

:class:`Phases` adds up named spans of wall time; what no span covers is "other" (reading
inputs, sorting, Python overhead), so the shares always sum to the whole run.
:func:`timed_preprocess` splits an encoder's time into tokenizing and computing without touching
its code: every sentence-transformers model (dense, sparse, multi-vector, cross-encoder) tokenizes
through its ``preprocess`` method, so timing that method on the instance is enough. torch, tqdm
and the profilers measure other things (kernels, iterations, call stacks); none of them keeps a
per-phase total across a whole stage, so this is written here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ORDER = ("read", "tokenize", "compute", "add", "write")
"""The order phases are shown in (pipeline order); any other phase follows, then "other"."""


def size(n_bytes: int) -> str:
    """A byte count as people read it.

    Example:
        >>> size(512), size(20_480), size(7_864_320), size(3 * 2**30)
        ('512 B', '20.0 KiB', '7.5 MiB', '3.00 GiB')
    """
    if n_bytes < 1024:
        return f"{n_bytes} B"
    if n_bytes < 2**20:
        return f"{n_bytes / 1024:.1f} KiB"
    if n_bytes < 2**30:
        return f"{n_bytes / 2**20:,.1f} MiB"
    return f"{n_bytes / 2**30:,.2f} GiB"


class Phases:
    """Wall time per named phase, since creation.

    Example:
        >>> p = Phases()
        >>> p.add("compute", 3.0); p.add("write", 1.0)
        >>> p.started -= 5.0  # pretend the run took 5 s
        >>> p.shares()
        {'compute': 0.6, 'write': 0.2, 'other': 0.2}
        >>> p.summary(1000, "pairs")
        '1,000 pairs in 5.0 s (200.0 pairs/s): compute 60%, write 20%, other 20%'
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        """Times the ``with`` block into phase ``name``."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - began)

    def total(self) -> float:
        return time.perf_counter() - self.started

    def shares(self) -> dict[str, float]:
        """Each phase's fraction of the wall time so far, plus ``other`` for the rest."""
        total = max(self.total(), 1e-9)
        names = sorted(self.seconds, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
        shares = {name: self.seconds[name] / total for name in names}
        shares["other"] = max(0.0, 1.0 - sum(shares.values()))
        return {name: round(value, 4) for name, value in shares.items()}

    def record(self, count: int) -> dict[str, Any]:
        """What a manifest keeps: items, seconds, items per second, seconds per phase."""
        total = round(self.total(), 3)
        return {
            "items": count,
            "seconds": total,
            "per_s": round(count / total, 1) if total > 0 else None,
            "phases": {name: round(seconds, 6) for name, seconds in self.seconds.items()},
        }

    def summary(self, count: int, unit: str) -> str:
        total = self.total()
        rate = f" ({count / total:,.1f} {unit}/s)" if total > 0 else ""
        parts = ", ".join(f"{name} {share:.0%}" for name, share in self.shares().items())
        return f"{count:,} {unit} in {total:.1f} s{rate}: {parts}"


@contextmanager
def timed_preprocess(model: Any, phases: Phases, name: str = "tokenize") -> Iterator[None]:
    """Within the block, ``model.preprocess`` (sentence-transformers' tokenizer step), and the
    tokenizing a student does to id lists (``model.rkd_tokenize_timer``), are timed into
    ``phases[name]``; a model without one is left alone (its tokenizing counts as computing).

    The wrapper is an instance attribute over the class's method, removed on exit, so the model
    is unchanged afterwards.
    """
    original = getattr(model, "preprocess", None)
    if not callable(original) or "preprocess" in vars(model):
        yield
        return

    @functools.wraps(original)  # its __wrapped__ is what work done ahead calls, untimed
    def preprocess(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases.add(name, time.perf_counter() - began)

    model.preprocess = preprocess
    # students that tokenize to id lists themselves (students._shared.encode_budgeted) report here
    model.rkd_tokenize_timer = lambda seconds: phases.add(name, seconds)
    try:
        yield
    finally:
        del model.preprocess
        del model.rkd_tokenize_timer
