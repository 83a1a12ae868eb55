"""BEIR-layout folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

from __future__ import annotations

from pathlib import Path

from retrieval_kd.data.base import Dataset
from retrieval_kd.errors import DataError
from retrieval_kd.io import iter_jsonl
from retrieval_kd.types import Doc, Qrels


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
        return {
            str(r["_id"]): str(r["text"]) for r in iter_jsonl(self.root / "queries.jsonl", ("_id", "text"))
        }

    def _read_docs(self) -> dict[str, Doc]:
        return {
            str(r["_id"]): Doc(str(r["_id"]), str(r["text"]), str(r.get("title") or ""))
            for r in iter_jsonl(self.root / "corpus.jsonl", ("_id", "text"))
        }

    def _read_qrels(self) -> Qrels:
        qrels: Qrels = {}
        path = self.qrels_path
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                cols = line.rstrip("\n").split("\t")
                if lineno == 1 and cols[0] == "query-id":
                    continue  # BEIR's header
                if not line.strip():
                    continue
                if len(cols) != 3:
                    raise DataError(
                        f"{path}:{lineno}: expected 3 tab-separated columns query-id, corpus-id, score"
                    )
                try:
                    rel = int(cols[2])
                except ValueError:
                    raise DataError(f"{path}:{lineno}: score {cols[2]!r} is not an integer") from None
                qrels.setdefault(cols[0], {})[cols[1]] = rel
        return qrels
