"""Candidates: each training query's positives (from qrels) and mined negatives.

On disk, a folder: ``candidates.jsonl`` (one query a line: ``query_id``, ``positives``,
``negatives`` ranked best first) and ``manifest.json`` (dataset, retriever, depth: provenance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_kd.errors import DataError
from retrieval_kd.io import (
    atomic_write,
    atomic_write_json,
    check_id,
    iter_jsonl_numbered,
    read_json_object,
    show,
)
from retrieval_kd.types import Pair


@dataclass(frozen=True)
class Candidate:
    query_id: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass
class Candidates:
    items: list[Candidate]
    manifest: dict[str, Any] = field(default_factory=dict)

    def pairs(self) -> list[Pair]:
        """Every (query, doc) pair a teacher must score, positives and negatives."""
        seen: set[Pair] = set()
        out: list[Pair] = []
        for c in self.items:
            for doc_id in (*c.positives, *c.negatives):
                pair = Pair(c.query_id, doc_id)
                if pair not in seen:
                    seen.add(pair)
                    out.append(pair)
        return out

    def save(self, folder: Path) -> None:
        lines = "".join(
            json.dumps(
                {"query_id": c.query_id, "positives": list(c.positives), "negatives": list(c.negatives)}
            )
            + "\n"
            for c in self.items
        )
        atomic_write(folder / "candidates.jsonl", lambda f: f.write(lines.encode()))
        atomic_write_json(folder / "manifest.json", {**self.manifest, "queries": len(self.items)})

    @classmethod
    def load(cls, folder: Path, corpus: set[str] | dict[str, Any] | None = None) -> Candidates:
        """Reads a candidates folder (or a bare ``.jsonl``).

        Each line needs a ``query_id`` (an id: a non-empty string without whitespace, or an
        integer), at least one of ``positives`` and a list of ``negatives`` (ids again); no
        query twice, no doc twice in one query's lists. With ``corpus``, every doc id is checked
        against it and the first stranger is reported with file and line.

        Raises:
            DataError: the first bad line, with file, line and what was expected; no candidates;
                a ``manifest.json`` that is not a JSON object.
        """
        path = folder if folder.suffix == ".jsonl" else folder / "candidates.jsonl"
        manifest_path = path.parent / "manifest.json"
        manifest = read_json_object(manifest_path) if manifest_path.is_file() else {}
        items = []
        seen: dict[str, int] = {}  # query id → its line (candidates hold one line per training query)
        for lineno, rec in iter_jsonl_numbered(path, ("query_id", "positives", "negatives")):
            where = f"{path}:{lineno}"
            query_id = check_id(rec["query_id"], "query id", where)
            if query_id in seen:
                raise DataError(
                    f"{where}: query id {show(query_id)} appears again (first at line {seen[query_id]}); "
                    "a query's candidates are one line"
                )
            seen[query_id] = lineno
            lists = {}
            for key in ("positives", "negatives"):
                if not isinstance(rec[key], list):
                    raise DataError(f"{where}: {key!r} must be a list of doc ids, got {show(rec[key])}")
                lists[key] = tuple(check_id(d, f"doc id in {key!r}", where) for d in rec[key])
            cand = Candidate(query_id, lists["positives"], lists["negatives"])
            if not cand.positives:
                raise DataError(
                    f"{where}: query {show(query_id)} has no positives; a candidate needs at least one"
                )
            listed = (*cand.positives, *cand.negatives)
            if len(set(listed)) < len(listed):
                twice = next(d for i, d in enumerate(listed) if d in listed[:i])
                raise DataError(
                    f"{where}: doc id {show(twice)} is listed twice for query {show(query_id)}; "
                    "positives and negatives are distinct documents"
                )
            if corpus is not None:
                for doc_id in listed:
                    if doc_id not in corpus:
                        raise DataError(
                            f"{where}: doc id {show(doc_id)} (query {show(query_id)}) is not in the corpus"
                        )
            items.append(cand)
        if not items:
            raise DataError(f"{path}: no candidates")
        return cls(items, manifest)
