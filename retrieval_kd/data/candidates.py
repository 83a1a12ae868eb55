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
from retrieval_kd.io import atomic_write, atomic_write_json, iter_jsonl_numbered, read_json
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
        """Reads a candidates folder (or a bare ``.jsonl``); with ``corpus``, every doc id is
        checked against it and the first stranger is reported with file and line."""
        path = folder if folder.suffix == ".jsonl" else folder / "candidates.jsonl"
        manifest_path = path.parent / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.is_file() else {}
        items = []
        for lineno, rec in iter_jsonl_numbered(path, ("query_id", "positives", "negatives")):
            for key in ("positives", "negatives"):
                if not isinstance(rec[key], list):
                    raise DataError(f"{path}:{lineno}: {key!r} must be a list of doc ids, got {rec[key]!r}")
            cand = Candidate(
                str(rec["query_id"]), tuple(map(str, rec["positives"])), tuple(map(str, rec["negatives"]))
            )
            if corpus is not None:
                for doc_id in (*cand.positives, *cand.negatives):
                    if doc_id not in corpus:
                        raise DataError(
                            f"{path}:{lineno}: doc id {doc_id!r} (query {cand.query_id!r}) "
                            "is not in the corpus"
                        )
            items.append(cand)
        if not items:
            raise DataError(f"{path}: no candidates")
        return cls(items, manifest)
