"""Multiple-comparison corrections for the paired tests between systems.

A table of *n* systems makes n·(n−1)/2 paired tests per metric; at p < 0.05 each, some "wins"
are luck. ranx computes the raw p-values (paired t-test, Fisher randomisation) but corrects
none of them, and scipy has only the false-discovery-rate procedures
(``scipy.stats.false_discovery_control``), not the family-wise ones IR papers use (Holm,
Bonferroni; PyTerrier's ``Experiment`` applies them through statsmodels, which rkd does not
otherwise need). Both are a few lines, written here with their textbook definitions.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

from retrieval_kd.errors import RkdError

__all__ = ["CORRECTIONS", "adjust"]

K = TypeVar("K", bound=Hashable)

CORRECTIONS = ("holm", "bonferroni", "none")


def adjust(p_values: Mapping[K, float], method: str = "holm") -> dict[K, float]:
    """Adjusted p-values of one family of tests (compare each with the unadjusted threshold).

    - ``holm``: step-down (Holm 1979). With the m raw p-values sorted, p₍₁₎ ≤ … ≤ p₍ₘ₎, the
      i-th adjusted value is max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎): the smallest is
      multiplied by m, the next by m − 1, and so on, never decreasing along the order.
    - ``bonferroni``: each multiplied by m, capped at 1.
    - ``none``: unchanged.

    Example:
        >>> adjust({"ab": 0.01, "ac": 0.04, "bc": 0.03})
        {'ab': 0.03, 'ac': 0.06, 'bc': 0.06}
        >>> adjust({"ab": 0.01, "ac": 0.04, "bc": 0.03}, "bonferroni")
        {'ab': 0.03, 'ac': 0.12, 'bc': 0.09}
        >>> adjust({"ab": float("nan"), "ac": 0.01, "bc": 0.02})
        {'ab': 1.0, 'ac': 0.03, 'bc': 0.04}
        >>> adjust({"ab": 0.5}, "sidak")
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.RkdError: unknown correction 'sidak'; choose from ['holm', 'bonferroni', 'none']
    """
    if method not in CORRECTIONS:
        raise RkdError(f"unknown correction {method!r}; choose from {list(CORRECTIONS)}")
    m = len(p_values)
    if method == "none":
        return dict(p_values)
    if method == "bonferroni":
        return {key: round(min(1.0, p * m), 15) for key, p in p_values.items()}
    adjusted: dict[K, float] = {}
    running = 0.0
    # a test of two identical runs has no p-value (nan): it is no evidence, p = 1, last in the order
    # (sorted with a nan key would put it anywhere and cap every pair after it at 1)
    known = {key: 1.0 if math.isnan(p) else p for key, p in p_values.items()}
    for rank, (key, p) in enumerate(sorted(known.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[key] = running
    return {key: round(adjusted[key], 15) for key in p_values}
