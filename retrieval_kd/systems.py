"""Several systems evaluated on one dataset and compared: what ``rkd eval beir`` and a recipe's
``[eval] systems`` share.

A system is a model (a student folder, a hub id, or a retriever without weights such as
``bm25``), indexed once under ``<out>/indexes/<name>`` with the index stage, or an index folder
that records its own query encoder. Each is evaluated by the eval stage (cached by fingerprint),
and the set is compared with paired tests under a multiple-comparison correction
(:func:`retrieval_kd.eval.metrics.compare`), quality beside cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError
from retrieval_kd.progress import Progress
from retrieval_kd.types import Run

__all__ = [
    "ROW_NAME",
    "Comparison",
    "System",
    "compare_systems",
    "evaluate_systems",
    "name_systems",
    "parse_index_spec",
    "parse_named",
    "rerank_systems",
]

ROW_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
"""A row's name: it names a folder and a TREC run tag, so one word of letters, digits and _ . + -."""


@dataclass(frozen=True)
class System:
    """One row of a comparison.

    Attributes:
        name: the row's name (and its folder under the output).
        model: student folder, hub id, or a retriever kind without weights (``"bm25"``).
        index: an existing index folder instead of ``model`` (its manifest names the encoder).
        student_kind: how to open ``model`` when it is not a saved rkd student.
        index_kind: the index kind to build (None: the student's own).
        index_options: that kind's settings.
    """

    name: str
    model: str | None = None
    index: Path | None = None
    student_kind: str | None = None
    index_kind: str | None = None
    index_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.model is None) == (self.index is None):
            raise RkdError(f"system {self.name!r}: give exactly one of a model or an index folder")


def parse_named(spec: str, option: str) -> tuple[str | None, str]:
    """``NAME=VALUE`` or ``VALUE``: the row name a person gave (None: none), and the value.

    A spec whose part before ``=`` holds a ``/``, or that names an existing path, is a value
    whole (a folder may have ``=`` in its name).

    Example:
        >>> parse_named("ensemble=runs/x/student", "--model")
        ('ensemble', 'runs/x/student')
        >>> parse_named("sentence-transformers/all-MiniLM-L6-v2", "--model")
        (None, 'sentence-transformers/all-MiniLM-L6-v2')
        >>> parse_named("runs/a=b/student", "--model")
        (None, 'runs/a=b/student')
        >>> parse_named("my run=x", "--model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.RkdError: --model 'my run=x': the name 'my run' must be one word of ...
    """
    name, sep, value = spec.partition("=")
    if not sep or "/" in name or Path(spec).exists():
        return None, spec
    if not name or not value:
        where = "before" if not name else "after"
        raise RkdError(f"{option} {spec!r}: nothing {where} '='; expected VALUE or NAME=VALUE")
    if not re.fullmatch(ROW_NAME, name):
        raise RkdError(
            f"{option} {spec!r}: the name {name!r} must be one word of letters, digits and _ . + - "
            "(e.g. 'bm25', 'dense-student'); expected VALUE or NAME=VALUE"
        )
    return name, value


def parse_index_spec(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the folder).

    Example:
        >>> parse_index_spec("student=runs/x/index")
        ('student', PosixPath('runs/x/index'))
        >>> parse_index_spec("runs/x/teacher")
        ('teacher', PosixPath('runs/x/teacher'))
    """
    name, folder = parse_named(spec, "--index")
    path = Path(folder)
    if name is None:
        return path.resolve().name if path.name in ("", ".", "..") else path.name, path
    return name, path


def name_systems(systems: Sequence[System]) -> list[System]:
    """Numbers systems whose names collide (two folders with one basename)."""
    names = [s.name for s in systems]
    if len(set(names)) == len(names):
        return list(systems)
    return [
        System(f"{s.name}-{i + 1}", s.model, s.index, s.student_kind, s.index_kind, s.index_options)
        for i, s in enumerate(systems)
    ]


@dataclass
class Comparison:
    """Metrics, costs and runs of evaluated systems, in their order."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)

    def add(self, name: str, extra: Mapping[str, Any], folder: Path) -> None:
        """Records one eval stage's result (its run read back from ``folder`` when cached)."""
        from retrieval_kd.eval.trec import read_trec

        self.rows[name] = dict(extra["metrics"])
        self.costs[name] = dict(extra.get("cost") or {})
        self.runs[name] = extra.get("run") or read_trec(folder / "run.trec")

    def rename(self, old: str, new: str) -> None:
        """Renames a row, keeping the order."""
        self.rows = {new if k == old else k: v for k, v in self.rows.items()}
        self.costs = {new if k == old else k: v for k, v in self.costs.items()}
        self.runs = {new if k == old else k: v for k, v in self.runs.items()}


def evaluate_systems(
    systems: Sequence[System],
    dataset: str,
    out: Path,
    *,
    metrics: tuple[str, ...],
    k: int,
    max_queries: int | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    say: Callable[[str], None] = print,
    into: Comparison | None = None,
    eval_root: Path | None = None,
) -> Comparison:
    """Indexes (once, under ``out/indexes/<name>``) and evaluates each system on ``dataset``.

    Args:
        eval_root: where each system's ``run.trec`` / ``metrics.json`` go (default ``out``).
        into: a comparison to extend (a recipe's own rows come first).
    """
    from retrieval_kd.stages import EvalStage, IndexStage, evaluate_stage, index_stage

    result = into if into is not None else Comparison()
    root = eval_root or out
    for system in name_systems(systems):
        folder = system.index
        if folder is None:
            assert system.model is not None
            built = index_stage(
                IndexStage(
                    system.model,
                    dataset,
                    out / "indexes" / system.name,
                    system.index_kind,
                    system.index_options,
                    batch_size,
                    system.student_kind,
                ),
                progress,
            )
            say(built.message(f"index {system.name}"))
            folder = built.path
        evaluated = evaluate_stage(
            EvalStage(
                system.name,
                folder,
                dataset,
                root / system.name,
                metrics,
                k,
                max_queries,
                batch_size,
                model=system.model,
            ),
            progress,
        )
        say(evaluated.message(f"eval {system.name}"))
        result.add(system.name, evaluated.extra, root / system.name)
    return result


def rerank_systems(
    comparison: Comparison,
    rerankers: Sequence[str],
    dataset: str,
    out: Path,
    *,
    metrics: tuple[str, ...],
    depth: int,
    max_queries: int | None = None,
    batch_size: int = 32,
    say: Callable[[str], None] = print,
    eval_root: Path | None = None,
) -> Comparison:
    """Reranks the top ``depth`` of the comparison's first system with each reranker (a saved
    cross-encoder student, or any CrossEncoder folder; ``NAME=MODEL`` names its row), as rows
    ``<first>+<reranker>`` (or ``NAME``) evaluated by the rerank stage into
    ``<eval_root or out>/<row>/``."""
    from retrieval_kd.stages.rerank import RerankStage, rerank_stage

    if not comparison.runs:
        raise RkdError("--rerank needs a first-stage system (a --model, --retriever or --index) to rerank")
    first = next(iter(comparison.runs))
    root = eval_root or out
    for spec in rerankers:
        given, model = parse_named(spec, "--rerank")
        name = given or f"{first}+{Path(model).name or model}"
        stage = RerankStage(
            name, model, root / first, dataset, root / name, metrics, depth, max_queries, batch_size
        )
        result = rerank_stage(stage)
        say(result.message(f"rerank {name}"))
        comparison.add(name, result.extra, root / name)
    return comparison


def compare_systems(
    comparison: Comparison,
    dataset: str,
    metrics: Sequence[str],
    out: Path,
    *,
    stat_test: str = "student",
    correction: str = "holm",
    max_p: float = 0.05,
    stem: str = "compare",
    qrels: Any = None,
) -> tuple[Any, dict[str, Path]]:
    """Paired tests between every two systems (when there are two or more) and the written
    comparison (:func:`retrieval_kd.eval.report.write_comparison`).

    Returns:
        The :class:`~retrieval_kd.eval.metrics.CompareReport` (None for a single system) and the
        files written.
    """
    from retrieval_kd.eval.metrics import compare
    from retrieval_kd.eval.report import write_comparison

    report = None
    if len(comparison.runs) > 1:
        if qrels is None:
            from retrieval_kd.data import load_dataset

            qrels = load_dataset(dataset).qrels
        # the metrics are recomputed by ranx over the same queries; the rows keep the eval stage's
        report = compare(
            comparison.runs, qrels, metrics, max_p=max_p, stat_test=stat_test, correction=correction
        )
    files = write_comparison(
        out, comparison.rows, metrics, comparison.costs, report, dataset=dataset, stem=stem
    )
    return report, files
