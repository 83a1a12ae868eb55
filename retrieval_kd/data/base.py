"""The reader interface every dataset meets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

from retrieval_kd.types import Doc, Qrels


@dataclass(frozen=True)
class QrelsCoverage:
    """Judgements that name a query absent from the topics or a document absent from the corpus.

    Attributes:
        queries_not_in_topics: judged query ids with no query text (they cannot be run).
        judgements_not_in_corpus: (query, doc) judgements whose doc is not in the corpus (it can
            never be retrieved).
        query_examples: up to three such query ids, for messages.
        doc_examples: up to three such doc ids, for messages.
    """

    queries_not_in_topics: int = 0
    judgements_not_in_corpus: int = 0
    query_examples: tuple[str, ...] = ()
    doc_examples: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.queries_not_in_topics or self.judgements_not_in_corpus)

    def counts(self) -> dict[str, int]:
        """The two counts, as recorded in ``metrics.json``."""
        return {
            "queries_not_in_topics": self.queries_not_in_topics,
            "judgements_not_in_corpus": self.judgements_not_in_corpus,
        }


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
    def topics(self) -> dict[str, str]:
        """query id → text for every query read, judged or not."""
        return self._read_queries()

    @cached_property
    def queries(self) -> dict[str, str]:
        """query id → text, only for queries that have qrels (BEIR evaluates those)."""
        qrels = self.qrels
        return {qid: text for qid, text in self.topics.items() if qid in qrels}

    @cached_property
    def docs(self) -> dict[str, Doc]:
        return self._read_docs()

    @cached_property
    def qrels(self) -> Qrels:
        return self._read_qrels()

    def doc_texts(self) -> dict[str, str]:
        return {doc_id: doc.full_text() for doc_id, doc in self.docs.items()}

    def qrels_coverage(self) -> QrelsCoverage:
        """Counts the judgements the topics or the corpus cannot match (reads both)."""
        topics, docs = self.topics, self.docs
        no_query = [qid for qid in self.qrels if qid not in topics]
        no_doc = [doc_id for judged in self.qrels.values() for doc_id in judged if doc_id not in docs]
        return QrelsCoverage(
            len(no_query), len(no_doc), tuple(no_query[:3]), tuple(dict.fromkeys(no_doc))[:3]
        )

    def fingerprint(self) -> dict[str, object]:
        """What identifies the data in provenance records."""
        return {"id": self.id, "queries": len(self.queries), "docs": len(self.docs)}
