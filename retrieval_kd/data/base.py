"""The reader interface every dataset meets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property

from retrieval_kd.types import Doc, Qrels


class Dataset(ABC):
    """Queries, documents and qrels, read once and kept in memory (BEIR scale)."""

    id: str

    @abstractmethod
    def _read_queries(self) -> dict[str, str]: ...

    @abstractmethod
    def _read_docs(self) -> dict[str, Doc]: ...

    @abstractmethod
    def _read_qrels(self) -> Qrels: ...

    @cached_property
    def queries(self) -> dict[str, str]:
        """query id → text, only for queries that have qrels (BEIR evaluates those)."""
        qrels = self.qrels
        return {qid: text for qid, text in self._read_queries().items() if qid in qrels}

    @cached_property
    def docs(self) -> dict[str, Doc]:
        return self._read_docs()

    @cached_property
    def qrels(self) -> Qrels:
        return self._read_qrels()

    def doc_texts(self) -> dict[str, str]:
        return {doc_id: doc.full_text() for doc_id, doc in self.docs.items()}

    def fingerprint(self) -> dict[str, object]:
        """What identifies the data in provenance records."""
        return {"id": self.id, "queries": len(self.queries), "docs": len(self.docs)}
