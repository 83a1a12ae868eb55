"""BM25 over a Lucene index built and searched by pyserini (Anserini).

The documents arrive as texts (the ``bm25`` retriever passes them through: title and text joined
into one ``contents`` field, BEIR's "flat" layout); Anserini's ``JsonCollection`` indexer analyses
them with its default English analyzer (Porter stemmer, Lucene's English stopwords) and
pyserini's ``LuceneSearcher`` ranks with BM25 (k1 = 0.9, b = 0.4 by default: pyserini's BEIR
regressions, which report SciFact test nDCG@10 0.6789 for this "flat" setting).

References:
    Lin et al., "Pyserini: A Python Toolkit for Reproducible Information Retrieval Research with
    Sparse and Dense Representations", SIGIR 2021; Kamphuis et al., "Which BM25 Do You Mean? A
    Large-Scale Reproducibility Study of Scoring Variants", ECIR 2020.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError
from retrieval_kd.indexes.lucene_base import LuceneIndex, default_threads

K1 = 0.9
B = 0.4
STEMMERS = ("porter", "krovetz", "none")
FIELDS = "contents = title + ' ' + text (BEIR flat)"


class LuceneBM25Index(LuceneIndex):
    """Texts in a Lucene index, ranked by BM25 through pyserini.

    Args:
        student_fingerprint: the ``bm25`` retriever's fingerprint.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation, in [0, 1].
        stemmer: ``porter`` (Anserini's default), ``krovetz`` or ``none``.
        stopwords: drop Lucene's English stopwords (Anserini's default) or keep them.
        threads: search threads.

    Example:
        >>> index = LuceneBM25Index()  # doctest: +SKIP
        >>> index.add(["a", "b"], ["solar panels", "coffee beans"])  # doctest: +SKIP
        >>> index.search(["q"], ["solar"], k=5)  # doctest: +SKIP
        {'q': {'a': 0.5108}}
    """

    kind = "lucene-bm25"
    OPTIONS = ("k1", "b", "stemmer", "stopwords", "threads")
    COLLECTION = "JsonCollection"

    def __init__(
        self,
        student_fingerprint: str = "",
        k1: float = K1,
        b: float = B,
        stemmer: str = "porter",
        stopwords: bool = True,
        threads: int | None = None,
    ) -> None:
        for name, value in (("k1", k1), ("b", b)):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise RkdError(f"lucene-bm25 index option {name} must be a number >= 0, got {value!r}")
        if b > 1:
            raise RkdError(f"lucene-bm25 index option b must be between 0 and 1, got {b!r}")
        if stemmer not in STEMMERS:
            raise RkdError(f"lucene-bm25 index option stemmer {stemmer!r}; choose from {list(STEMMERS)}")
        if not isinstance(stopwords, bool):
            raise RkdError(f"lucene-bm25 index option stopwords must be true or false, got {stopwords!r}")
        settings = {
            "model": "BM25 (Lucene)",
            "k1": float(k1),
            "b": float(b),
            "fields": FIELDS,
            "analyzer": f"Anserini DefaultEnglishAnalyzer (stemmer {stemmer}, "
            f"{'Lucene English stopwords removed' if stopwords else 'stopwords kept'})",
            "stemmer": stemmer,
            "stopwords": stopwords,
        }
        super().__init__(student_fingerprint, settings, threads or default_threads())
        self.k1, self.b, self.stemmer, self.stopwords = float(k1), float(b), stemmer, stopwords

    @classmethod
    def create(cls, student_fingerprint: str, options: Mapping[str, Any]) -> LuceneBM25Index:
        """An empty index for the ``bm25`` retriever.

        Args:
            options: ``[index.options]`` (or ``[mine.index]``): ``k1`` (0.9), ``b`` (0.4),
                ``stemmer`` (porter), ``stopwords`` (true: removed), ``threads`` (all cores).
        """
        return cls(student_fingerprint, **cls.check_options(options))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> LuceneBM25Index:
        s = manifest.get("settings") or {}
        return cls(
            str(manifest.get("student_fingerprint", "")),
            k1=s.get("k1", K1),
            b=s.get("b", B),
            stemmer=s.get("stemmer", "porter"),
            stopwords=s.get("stopwords", True),
        )

    def records(self, doc_ids: Sequence[str], reps: Any) -> list[dict[str, Any]]:
        """Shapes: doc_ids[N], reps: N texts → N ``{"id", "contents"}`` records."""
        if isinstance(reps, str) or not all(isinstance(t, str) for t in reps):
            raise RkdError(
                "the lucene-bm25 index holds texts; these representations are not a list of strings "
                "(index a learned sparse student with --kind sparse or lucene-impact instead)"
            )
        return [{"id": d, "contents": t} for d, t in zip(doc_ids, reps, strict=False)]

    def indexer_flags(self) -> list[str]:
        return ["-stemmer", self.stemmer, *([] if self.stopwords else ["-keepStopwords"])]

    def open_searcher(self, folder: Path) -> Any:
        from retrieval_kd.lucene import start_jvm

        start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        searcher = LuceneSearcher(str(folder))
        searcher.set_bm25(self.k1, self.b)
        if (self.stemmer, self.stopwords) != ("porter", True):  # queries analysed as the documents were
            from pyserini.analysis import get_lucene_analyzer

            searcher.set_analyzer(
                get_lucene_analyzer(
                    stemming=self.stemmer != "none", stemmer=self.stemmer, stopwords=self.stopwords
                )
            )
        return searcher

    def run_search(self, searcher: Any, query_ids: list[str], query_reps: Any, k: int) -> dict[str, Any]:
        """Shapes: query_ids[Q], query_reps: Q texts → query id → hits."""
        texts = [query_reps] if isinstance(query_reps, str) else list(query_reps)
        if len(texts) != len(query_ids) or not all(isinstance(t, str) for t in texts):
            raise RkdError(f"{len(query_ids)} query ids need as many query texts for BM25")
        hits: dict[str, Any] = searcher.batch_search(texts, query_ids, k=k, threads=self.threads)
        return hits
