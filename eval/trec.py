"""TREC run files: ``qid Q0 docid rank score tag``, one retrieved document per line.

This is what trec_eval, ranx and pyserini read and write, so runs made here can be checked
against them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import IO

from retrieval_kd.errors import DataError
from retrieval_kd.io import DECIMAL, atomic_write, check_id, iter_lines, show
from retrieval_kd.types import Run

__all__ = ["read_trec", "write_trec"]

_RANK = re.compile(r"-?[0-9]+")


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
    """Reads a TREC run.

    Raises:
        DataError: naming ``file:line``: not 6 fields, a rank that is not an integer, a score
            that is not a finite number, a document twice for one query; or no line at all.
    """
    path = Path(path)
    run: Run = {}
    for lineno, line in iter_lines(path):
        where = f"{path}:{lineno}"
        fields = line.split()
        if len(fields) != 6:
            raise DataError(
                f"{where}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: "
                f"{show(line.strip())}"
            )
        qid, _, doc_id, rank, score_text, _ = fields
        if not _RANK.fullmatch(rank) or not DECIMAL.fullmatch(score_text):
            raise DataError(
                f"{where}: rank must be an integer and score a number, got rank {show(rank)}, "
                f"score {show(score_text)}"
            )
        score = float(score_text)
        if not math.isfinite(score):
            raise DataError(f"{where}: score {show(score_text)} is not a finite number")
        docs = run.setdefault(check_id(qid, "qid", where), {})
        if doc_id in docs:
            raise DataError(f"{where}: document {show(doc_id)} appears twice for query {show(qid)}")
        docs[check_id(doc_id, "docid", where)] = score
    if not run:
        raise DataError(f"{path}: no ranked documents (the file is empty)")
    return run
