"""Records shared by every stage: NamedTuples, as ir_datasets does."""

from __future__ import annotations

from typing import NamedTuple

# What ranx takes and what every index returns: query id → doc id → score.
Run = dict[str, dict[str, float]]
# query id → doc id → graded relevance.
Qrels = dict[str, dict[str, int]]


class Query(NamedTuple):
    query_id: str
    text: str


class Doc(NamedTuple):
    doc_id: str
    text: str
    title: str = ""

    def full_text(self) -> str:
        """Title and body joined as BEIR models see them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


class Pair(NamedTuple):
    query_id: str
    doc_id: str


class Judgement(NamedTuple):
    """A pairwise teacher judgement key: how much ``doc_a`` beats ``doc_b`` for ``query_id``."""

    query_id: str
    doc_a: str
    doc_b: str
