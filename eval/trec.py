"""TREC run files: ``qid Q0 docid rank score tag``, one retrieved document per line.

This is what trec_eval, ranx and pyserini read and write, so runs made here can be checked
against them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO

from retrieval_kd.errors import DataError
from retrieval_kd.io import atomic_write, iter_lines
from retrieval_kd.types import Run

__all__ = ["read_trec", "write_trec"]


def write_trec(run: Run, path: Path, tag: str = "rkd") -> None:
    """Writes ``run`` atomically, ranks from 1 by descending score, ties broken by doc id.

    Queries are written in the run's order. Scores are written with ``repr`` precision, so a
    read-back run equals the one written.
    """
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"a TREC run tag must be one non-empty word, got {tag!r}")

    def write(f: IO[bytes]) -> None:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            lines = [
                f"{qid} Q0 {doc_id} {rank} {score!r} {tag}\n"
                for rank, (doc_id, score) in enumerate(ranked, start=1)
            ]
            f.write("".join(lines).encode())

    for qid, docs in run.items():
        for name in (qid, *docs):
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"TREC ids cannot be empty or contain whitespace: {name!r} (query {qid!r})")
    atomic_write(Path(path), write)


def read_trec(path: Path) -> Run:
    """Reads a TREC run; a malformed line raises :class:`DataError` naming ``file:line``."""
    path = Path(path)
    run: Run = {}
    for lineno, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise DataError(
                f"{path}:{lineno}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: "
                f"{line.strip()[:80]!r}"
            )
        qid, _, doc_id, rank, score_text, _ = fields
        try:
            int(rank)
            score = float(score_text)
        except ValueError:
            raise DataError(
                f"{path}:{lineno}: rank must be an integer and score a number, got rank {rank!r}, "
                f"score {score_text!r}"
            ) from None
        if math.isnan(score):
            raise DataError(f"{path}:{lineno}: score is NaN")
        docs = run.setdefault(qid, {})
        if doc_id in docs:
            raise DataError(f"{path}:{lineno}: document {doc_id!r} appears twice for query {qid!r}")
        docs[doc_id] = score
    return run
