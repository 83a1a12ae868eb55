"""BEIR-layout folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Every line is checked as it is read, and a bad one raises :class:`DataError` naming
``file:line``: ids are non-empty strings without whitespace (or JSON integers), texts are
strings (a title may be null or absent), relevance is an integer from 0 to 2**31 - 1. An id
given twice (a document, a query, or a query-document judgement) is an error naming both
lines: which of two texts or grades is meant is for the data's owner to say. An empty file, or
qrels with only their header, is an error too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from retrieval_kd.data.base import Dataset
from retrieval_kd.errors import DataError
from retrieval_kd.io import check_id, check_text, iter_jsonl_numbered, iter_lines, show
from retrieval_kd.types import Doc, Qrels

MAX_RELEVANCE = 2**31 - 1
_RELEVANCE = re.compile(r"[0-9]{1,10}")


class BeirFolder(Dataset):
    def __init__(self, root: Path, split: str = "test") -> None:
        self.root = root
        self.split = split
        self.id = f"{root}:{split}"
        for name in ("corpus.jsonl", "queries.jsonl"):
            if not (root / name).is_file():
                raise DataError(
                    f"{root}: not a BEIR folder (no {name}); expected corpus.jsonl, queries.jsonl, qrels/"
                )
        if not self.qrels_path.is_file():
            splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
            raise DataError(f"{root}: no qrels for split {split!r}; splits here: {splits}")

    @property
    def qrels_path(self) -> Path:
        return self.root / "qrels" / f"{self.split}.tsv"

    def _read_queries(self) -> dict[str, str]:
        path = self.root / "queries.jsonl"
        queries: dict[str, str] = {}
        for lineno, r in iter_jsonl_numbered(path, ("_id", "text")):
            where = f"{path}:{lineno}"
            qid = check_id(r["_id"], "query id", where)
            if qid in queries:
                raise _repeated(path, lineno, f"query id {show(qid)}", partial(_same_id, wanted=qid))
            queries[qid] = check_text(r["text"], "'text'", where)
        if not queries:
            raise DataError(f"{path}: no queries (the file is empty)")
        return queries

    def _read_docs(self) -> dict[str, Doc]:
        path = self.root / "corpus.jsonl"
        docs: dict[str, Doc] = {}
        for lineno, r in iter_jsonl_numbered(path, ("_id", "text")):
            where = f"{path}:{lineno}"
            doc_id = check_id(r["_id"], "doc id", where)
            if doc_id in docs:
                raise _repeated(path, lineno, f"doc id {show(doc_id)}", partial(_same_id, wanted=doc_id))
            text = check_text(r["text"], "'text'", where)
            docs[doc_id] = Doc(doc_id, text, check_text(r.get("title"), "'title'", where, optional=True))
        if not docs:
            raise DataError(f"{path}: no documents (the file is empty)")
        return docs

    def _read_qrels(self) -> Qrels:
        qrels: Qrels = {}
        path = self.qrels_path
        header = False
        for lineno, line in iter_lines(path):
            cols = line.split("\t")
            if lineno == 1 and cols[0] == "query-id":
                header = True  # BEIR's
                continue
            where = f"{path}:{lineno}"
            if len(cols) != 3:
                raise DataError(
                    f"{where}: expected 3 tab-separated columns query-id, corpus-id, score; got {len(cols)}"
                )
            qid = check_id(cols[0], "query id", where)
            doc_id = check_id(cols[1], "doc id", where)
            grade = cols[2].strip(" ")
            if not _RELEVANCE.fullmatch(grade) or int(grade) > MAX_RELEVANCE:
                raise DataError(
                    f"{where}: score {show(cols[2])} is not a relevance grade "
                    f"(an integer from 0 to {MAX_RELEVANCE})"
                )
            judged = qrels.setdefault(qid, {})
            if doc_id in judged:
                raise _repeated(
                    path,
                    lineno,
                    f"the judgement of query {show(qid)} and doc {show(doc_id)}",
                    partial(_same_pair, pair=[qid, doc_id]),
                    "a query-document pair is judged once",
                )
            judged[doc_id] = int(grade)
        if not qrels:
            what = "only a header" if header else "no lines"
            raise DataError(
                f"{path}: no judgements (the file has {what}); expected lines query-id, corpus-id, score"
            )
        return qrels


def _same_id(line: str, wanted: str) -> bool:
    # Only called on the error path, to find a repeated id's first line: a cheap text test
    # first (an escaped id may not appear verbatim), then the parsed id (the lines before the
    # repeat all parsed already).
    if wanted not in line and "\\" not in line:
        return False
    return str(json.loads(line)["_id"]) == wanted


def _same_pair(line: str, pair: list[str]) -> bool:
    return line.split("\t")[:2] == pair


def _repeated(
    path: Path, lineno: int, subject: str, matches: Callable[[str], bool], rule: str = "ids must be unique"
) -> DataError:
    """The error for an id seen before: rescans the file for its first line (an error path, so
    the reader keeps no line numbers for a corpus-sized dict of ids)."""
    first = next((n for n, line in iter_lines(path) if n < lineno and matches(line)), None)
    at = f" (first at line {first})" if first is not None else ""
    return DataError(f"{path}:{lineno}: {subject} appears again{at}; {rule}")
