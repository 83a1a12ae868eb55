"""Retrieval metrics and significance tests, computed by ranx.

Conventions (BEIR's, so figures compare with published ones):

- Queries are the qrels' queries. A run's query that has no qrels is dropped; a qrels query the
  run lacks scores 0 on every metric. ranx refuses a run whose query ids differ from the qrels'
  (``check_keys`` asserts), so the run is aligned here: missing queries get an empty ranking,
  which ranx scores as 0.
- A retrieved document whose id equals the query id is removed (BEIR's ``ignore_identical_ids``,
  which matters for corpora such as ArguAna and Quora where queries are also documents).
- Relevance is graded; a judgement of 0 counts as not relevant.

ranx is imported inside the functions: ``import ranx`` takes about 2 s and numba-compiles on
first use.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError
from retrieval_kd.types import Qrels, Run

__all__ = ["METRICS", "CompareReport", "compare", "evaluate", "parse_metric"]

# Metric names as users type them, lower-cased; each takes an optional "@k" cutoff.
METRICS = (
    "f1",
    "hit_rate",
    "hits",
    "map",
    "mrr",
    "ndcg",
    "ndcg_burges",
    "precision",
    "r-precision",
    "recall",
)
_METRIC_RE = re.compile(r"^(?P<name>[a-z_-]+)(?:@(?P<k>\d+))?$")


def parse_metric(name: str) -> str:
    """Checks a metric name and returns its canonical (ranx) spelling.

    Example:
        >>> parse_metric("nDCG@10")
        'ndcg@10'
        >>> parse_metric("recall@0")
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.RkdError: metric 'recall@0': the cutoff must be at least 1
    """
    canonical = name.strip().lower()
    match = _METRIC_RE.match(canonical)
    if match is None or match["name"] not in METRICS:
        raise RkdError(
            f"unknown metric {name!r}; choose from {list(METRICS)}, each with an optional @k "
            "cutoff (e.g. 'ndcg@10', 'recall@100', 'mrr@10')"
        )
    if match["k"] is not None and int(match["k"]) < 1:
        raise RkdError(f"metric {name!r}: the cutoff must be at least 1")
    return canonical


def numba_cache(ranx_home: Path | None, environ: dict[str, str]) -> tuple[Path | None, bool]:
    """Where numba keeps ranx's compiled kernels, and whether they still have to be compiled.

    ranx compiles its metrics with ``numba.njit(cache=True)``: the first use in a fresh install
    compiles for a minute or more, later runs load the cache from ranx's ``__pycache__``. Where
    that folder is read-only (a system or container install) numba would compile on every run, so
    ``NUMBA_CACHE_DIR`` is pointed at ``~/.cache/rkd/numba`` (``environ`` is updated; it must
    happen before numba loads).

    Example:
        >>> import tempfile
        >>> home = Path(tempfile.mkdtemp())
        >>> numba_cache(home, {}) == (home, True)  # writable, nothing compiled yet
        True
    """
    if ranx_home is not None and "NUMBA_CACHE_DIR" not in environ and not os.access(ranx_home, os.W_OK):
        environ["NUMBA_CACHE_DIR"] = str(Path.home() / ".cache" / "rkd" / "numba")
    cache = Path(environ["NUMBA_CACHE_DIR"]) if "NUMBA_CACHE_DIR" in environ else ranx_home
    compiled = cache is not None and cache.is_dir() and any(cache.rglob("*ndcg*.nbi"))
    return cache, not compiled


def _ranx() -> Any:
    """ranx, after :func:`numba_cache`; a run about to compile says so instead of sitting silent."""
    import importlib.util
    import logging
    import sys

    if "ranx" not in sys.modules:
        spec = importlib.util.find_spec("ranx")
        home = Path(spec.origin).parent if spec is not None and spec.origin else None
        cache, compiles = numba_cache(home, os.environ)  # type: ignore[arg-type]
        if compiles:
            logging.getLogger(__name__).warning(
                "compiling ranx's metrics with numba (first use of this install: a minute or more; "
                "cached in %s for later runs)",
                cache,
            )
    import ranx

    return ranx


def _prepare(qrels: Qrels, run: Run, ignore_identical_ids: bool) -> tuple[Qrels, Run]:
    if not qrels:
        raise RkdError("qrels are empty: there is nothing to evaluate against")
    aligned: Run = {}
    for qid in qrels:
        docs = run.get(qid, {})
        if ignore_identical_ids:
            docs = {doc_id: score for doc_id, score in docs.items() if doc_id != qid}
        aligned[qid] = {doc_id: float(score) for doc_id, score in docs.items()}
    return {qid: {d: int(r) for d, r in judged.items()} for qid, judged in qrels.items()}, aligned


@contextmanager
def _quiet_numba() -> Iterator[None]:
    # ranx's kernels emit NumbaTypeSafetyWarning (uint64 → int64 casts) when compiled; harmless,
    # and an error under pytest's "warnings as errors".
    with warnings.catch_warnings():
        try:
            from numba.core.errors import NumbaWarning
        except ImportError:  # pragma: no cover - numba ships with ranx
            pass
        else:
            warnings.simplefilter("ignore", NumbaWarning)
        yield


def evaluate(
    qrels: Qrels, run: Run, metrics: Sequence[str], *, ignore_identical_ids: bool = True
) -> dict[str, float]:
    """Mean of each metric over the qrels' queries.

    Args:
        qrels: query id → doc id → graded relevance.
        run: query id → doc id → score; queries without qrels are dropped, qrels queries missing
            here score 0.
        metrics: names such as "ndcg@10", "recall@100", "mrr@10", "map@100", "precision@10".
        ignore_identical_ids: drop a retrieved doc whose id equals its query's id (BEIR).

    Returns:
        canonical metric name → mean score, in the order asked.

    Example:
        >>> evaluate({"q1": {"d1": 1}, "q2": {"d2": 1}}, {"q1": {"d0": 2.0, "d1": 1.0}}, ["mrr@10"])
        {'mrr@10': 0.25}
    """
    ranx = _ranx()
    names = [parse_metric(m) for m in metrics]
    if not names:
        raise RkdError(f"no metrics asked for; choose from {list(METRICS)}")
    qrels_, run_ = _prepare(qrels, run, ignore_identical_ids)
    with _quiet_numba():
        # ranx returns a bare float for one metric, a dict for several.
        scores: Any = ranx.evaluate(ranx.Qrels(qrels_), ranx.Run(run_), list(dict.fromkeys(names)))
    if len(set(names)) == 1:
        return {names[0]: float(scores)}
    return {name: float(scores[name]) for name in names}


def letter(i: int) -> str:
    """The letter naming the ``i``-th row of a comparison table (a, b, ..., z, then [26], ...).

    Example:
        >>> letter(0), letter(25), letter(26)
        ('a', 'z', '[26]')
    """
    return chr(ord("a") + i) if i < 26 else f"[{i}]"


@dataclass(frozen=True)
class CompareReport:
    """Per-run metrics with paired significance tests between every two runs.

    Attributes:
        metrics: run name → metric → mean score.
        p_values: run name → other run name → metric → raw p-value of the paired test (ranx's).
        better_than: run name → metric → the runs it beats with an *adjusted* p < ``max_p``.
        max_p: the significance threshold used.
        stat_test: ranx's test name ("student": paired t-test, "fisher": randomisation).
        correction: the multiple-comparison correction (:mod:`retrieval_kd.eval.stats`), applied
            per metric across all pairs of runs.
        p_adjusted: as ``p_values``, after the correction.
    """

    metrics: dict[str, dict[str, float]]
    p_values: dict[str, dict[str, dict[str, float]]]
    better_than: dict[str, dict[str, list[str]]]
    max_p: float
    stat_test: str = "student"
    run_names: list[str] = field(default_factory=list)
    correction: str = "none"
    p_adjusted: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def legend(self) -> str:
        """One line saying what the letters mean, naming the test and the correction."""
        test = STAT_TESTS.get(self.stat_test, self.stat_test)
        pairs = len(self.run_names) * (len(self.run_names) - 1) // 2
        fix = "no correction" if self.correction == "none" else f"{self.correction.capitalize()}-corrected"
        return (
            f"letters: significantly better than that row ({test}, p < {self.max_p}, "
            f"{fix} across {pairs} pair{'' if pairs == 1 else 's'} per metric)"
        )

    def markers(self) -> dict[str, dict[str, str]]:
        """run → metric → superscript letters of the runs it significantly beats (a, b, c, ...).

        The letters follow the order of :attr:`run_names`, as in ranx's and papers' tables.
        """
        letters = {name: letter(i) for i, name in enumerate(self.run_names)}
        return {
            run: {m: "".join(letters[o] for o in beaten) for m, beaten in per_metric.items()}
            for run, per_metric in self.better_than.items()
        }


STAT_TESTS = {"student": "paired t-test", "fisher": "Fisher randomisation test"}


def compare(
    runs: dict[str, Run],
    qrels: Qrels,
    metrics: Sequence[str],
    *,
    max_p: float = 0.05,
    stat_test: str = "student",
    correction: str = "holm",
    ignore_identical_ids: bool = True,
) -> CompareReport:
    """Evaluates two or more runs on the same queries and tests every pair for significance.

    Args:
        runs: system name → run; each is aligned to the qrels as :func:`evaluate` does.
        qrels: query id → doc id → graded relevance.
        metrics: metric names, as for :func:`evaluate`.
        max_p: significance threshold.
        stat_test: a ranx test: "student" (paired t-test), "fisher" (randomisation).
        correction: "holm" (default), "bonferroni" or "none", per metric across all pairs.
        ignore_identical_ids: as for :func:`evaluate`.
    """
    from retrieval_kd.eval.stats import CORRECTIONS, adjust

    ranx = _ranx()

    if stat_test not in STAT_TESTS:
        raise RkdError(f"unknown significance test {stat_test!r}; choose from {list(STAT_TESTS)}")
    if correction not in CORRECTIONS:
        raise RkdError(f"unknown correction {correction!r}; choose from {list(CORRECTIONS)}")
    if len(runs) < 2:
        raise RkdError(f"compare needs at least two runs, got {len(runs)}: {list(runs)}")
    names = list(dict.fromkeys(parse_metric(m) for m in metrics))
    if not names:
        raise RkdError(f"no metrics asked for; choose from {list(METRICS)}")
    ranx_runs = []
    qrels_: Qrels = {}
    for name, run in runs.items():
        qrels_, run_ = _prepare(qrels, run, ignore_identical_ids)
        ranx_runs.append(ranx.Run(run_, name=name))
    with _quiet_numba():
        report = ranx.compare(ranx.Qrels(qrels_), ranx_runs, names, stat_test=stat_test, max_p=max_p)
    run_names = list(runs)
    scores = {r: {m: float(report.results[r][m]) for m in names} for r in run_names}
    p_values: dict[str, dict[str, dict[str, float]]] = {r: {} for r in run_names}
    for r in run_names:
        for o in run_names:
            if o != r:
                p_values[r][o] = {m: float(report.comparisons[r, o][m]["p_value"]) for m in names}
    # one family per metric: every unordered pair of runs (a two-sided test is symmetric)
    pairs = [(r, o) for i, r in enumerate(run_names) for o in run_names[i + 1 :]]
    p_adjusted: dict[str, dict[str, dict[str, float]]] = {r: {o: {} for o in p_values[r]} for r in run_names}
    for m in names:
        fixed = adjust({(r, o): p_values[r][o][m] for r, o in pairs}, correction)
        for (r, o), p in fixed.items():
            p_adjusted[r][o][m] = p_adjusted[o][r][m] = p
    better: dict[str, dict[str, list[str]]] = {r: {m: [] for m in names} for r in run_names}
    for r in run_names:
        for o in run_names:
            for m in names:
                if o != r and p_adjusted[r][o][m] < max_p and scores[r][m] > scores[o][m]:
                    better[r][m].append(o)
    return CompareReport(scores, p_values, better, max_p, stat_test, run_names, correction, p_adjusted)
