"""Evaluation: ranx metrics, significance tests, TREC run files and the printed table.

Importing this package imports neither ranx nor numba: use the submodules
(:mod:`.metrics`, :mod:`.trec`, :mod:`.table`) or the lazy names below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .metrics import METRICS, CompareReport, compare, evaluate, parse_metric
    from .table import metrics_table
    from .trec import read_trec, write_trec

__all__ = [
    "METRICS",
    "CompareReport",
    "compare",
    "evaluate",
    "metrics_table",
    "parse_metric",
    "read_trec",
    "write_trec",
]

_HOME = {
    "METRICS": "metrics",
    "CompareReport": "metrics",
    "compare": "metrics",
    "evaluate": "metrics",
    "parse_metric": "metrics",
    "metrics_table": "table",
    "read_trec": "trec",
    "write_trec": "trec",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
