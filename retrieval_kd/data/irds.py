"""ir_datasets ids (``beir/scifact/train``): the same ids offline and online."""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from retrieval_kd.data.base import Dataset
from retrieval_kd.errors import DataError
from retrieval_kd.types import Doc, Qrels


def _irds() -> Any:
    # ir_datasets reads IR_DATASETS_HOME once at import, so the import waits until a dataset is
    # opened (the CLI may set the variable from a flag first).
    import ir_datasets

    return ir_datasets


def list_ids(pattern: str = "") -> list[str]:
    """Registered ir_datasets ids containing ``pattern``."""
    return sorted(name for name in _irds().registry if pattern in name)


def list_datasets(pattern: str = "") -> list[tuple[str, bool]]:
    """Registered ir_datasets ids containing ``pattern``, each with whether it works offline.

    An id is available when every file ir_datasets would download for it is already under
    ``IR_DATASETS_HOME``: for ``beir/scifact/train``, the collection's ``beir/scifact/source.zip``.
    Nothing is downloaded, extracted or read; only paths are checked.

    Returns:
        ``(id, available)`` pairs sorted by id.
    """
    registry = _irds().registry
    # the plain mapping: registry[name] logs a deprecation notice for each renamed id
    datasets = getattr(registry, "_registered", None)
    get = datasets.__getitem__ if isinstance(datasets, dict) else registry.__getitem__
    return [(name, _available(get(name))) for name in list_ids(pattern)]


def _available(dataset: Any) -> bool:
    """Walks the dataset's handler objects down to its downloads and checks their files.

    A cache or extraction that already exists stands for everything beneath it. A dataset whose
    walk finds no download at all (its sources hidden where the walk cannot see) counts as
    unavailable: this answers "will it work offline", so a doubt is a no.
    """
    from ir_datasets.util import Cache, Download, LocalDownload, TarExtractAll, ZipExtractCache

    found = 0
    seen: set[int] = set()
    stack: list[Any] = [dataset]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | Path):
            continue
        seen.add(id(obj))
        if isinstance(obj, Download):
            found += 1
            local = [m for m in obj.mirrors if isinstance(m, LocalDownload)]
            cached = obj._cache_path is not None and os.path.exists(obj._cache_path)
            if not cached and not any(m._path.exists() for m in local):
                return False
            continue
        if isinstance(obj, LocalDownload):
            found += 1
            if not obj._path.exists():
                return False
            continue
        done = (
            (isinstance(obj, Cache) and Path(obj._path).exists())
            or (isinstance(obj, ZipExtractCache) and os.path.exists(obj.extract_path))
            or (isinstance(obj, TarExtractAll) and os.path.exists(obj._extract_path))
        )
        if done:
            found += 1
            continue
        stack.extend(_children(obj))
    return found > 0


def _children(obj: Any) -> list[Any]:
    """What an ir_datasets object holds: attributes of its own classes, container items, and
    the variables a ``Lazy`` function closes over."""
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.FunctionType):
        return [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    if type(obj).__module__.startswith("ir_datasets") and hasattr(obj, "__dict__"):
        return list(vars(obj).values())
    return []


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


class IrDataset(Dataset):
    def __init__(self, dataset_id: str) -> None:
        irds = _irds()
        try:
            self._ds = irds.load(dataset_id)
        except KeyError:
            near = [n for n in list_ids(dataset_id.split("/")[0]) if n.count("/") >= 1][:8]
            hint = f"; close matches: {near}" if near else ""
            raise DataError(
                f"unknown dataset {dataset_id!r}: not an ir_datasets id nor a folder{hint}; "
                "list valid ids with `rkd datasets [PATTERN]`"
            ) from None
        self.id = dataset_id
        for what in ("queries", "docs", "qrels"):
            if not getattr(self._ds, f"has_{what}")():
                raise DataError(
                    f"dataset {dataset_id!r} has no {what}; pick a split such as {dataset_id}/test"
                )

    @contextmanager
    def _fetching(self) -> Iterator[None]:
        """ir_datasets downloads what its cache lacks; offline that fails deep in requests (an
        OSError): one line saying where the cache is and how to fill it instead."""
        try:
            yield
        except OSError as e:
            home = os.environ.get("IR_DATASETS_HOME") or "~/.ir_datasets (IR_DATASETS_HOME is unset)"
            raise DataError(
                f"dataset {self.id!r} is not in the ir_datasets cache at {home} and could not be "
                f"downloaded ({type(e).__name__}); point IR_DATASETS_HOME at a cache that holds it "
                "(`. scripts/data.sh` for ../shared/data) or check `rkd datasets`"
            ) from None

    def _read_queries(self) -> dict[str, str]:
        with self._fetching():
            return {q.query_id: q.text for q in self._ds.queries_iter()}

    def _read_docs(self) -> dict[str, Doc]:
        with self._fetching():
            return {
                d.doc_id: Doc(d.doc_id, d.text, getattr(d, "title", "") or "") for d in self._ds.docs_iter()
            }

    def _read_qrels(self) -> Qrels:
        qrels: Qrels = {}
        with self._fetching():
            for r in self._ds.qrels_iter():
                qrels.setdefault(r.query_id, {})[r.doc_id] = int(r.relevance)
        return qrels

    def fingerprint(self) -> dict[str, object]:
        return {
            **super().fingerprint(),
            "source": "ir_datasets",
            "home": os.environ.get("IR_DATASETS_HOME", ""),
        }
