"""ir_datasets ids (``beir/scifact/train``): the same ids offline and online."""

from __future__ import annotations

import os
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

    def _read_queries(self) -> dict[str, str]:
        return {q.query_id: q.text for q in self._ds.queries_iter()}

    def _read_docs(self) -> dict[str, Doc]:
        return {d.doc_id: Doc(d.doc_id, d.text, getattr(d, "title", "") or "") for d in self._ds.docs_iter()}

    def _read_qrels(self) -> Qrels:
        qrels: Qrels = {}
        for r in self._ds.qrels_iter():
            qrels.setdefault(r.query_id, {})[r.doc_id] = int(r.relevance)
        return qrels

    def fingerprint(self) -> dict[str, object]:
        return {
            **super().fingerprint(),
            "source": "ir_datasets",
            "home": os.environ.get("IR_DATASETS_HOME", ""),
        }
