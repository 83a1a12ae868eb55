"""Imports the teacher score files people already share into a :class:`ScoreStore`.

Formats (chosen by file extension unless given):

- ``tsv`` (``.tsv``): ``query_id<TAB>doc_id<TAB>score``, the common cross-encoder score-file
  layout. A first line whose third column is literally ``score`` is taken as a header.
- ``trec`` (``.trec``, ``.run``): ``qid Q0 docid rank score tag``, whitespace-separated.
- ``jsonl`` (``.jsonl``): one ``{"query_id": ..., "doc_id": ..., "score": ...}`` per line.

Blank lines are skipped. A pair that occurs twice keeps its later score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.io import iter_lines
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.types import Pair

Row = tuple[str, str, float]

_BY_SUFFIX = {".jsonl": "jsonl", ".trec": "trec", ".run": "trec", ".tsv": "tsv"}


def import_scores(store: ScoreStore, path: Path, fmt: str | None = None, *, batch_size: int = 100_000) -> int:
    """Adds every score in ``path`` to ``store``, ``batch_size`` rows per stored part.

    Args:
        store: an open (writable) store; the file's scores must come from its teacher.
        path: the score file.
        fmt: one of ``FORMATS``; by default chosen from the file extension.
        batch_size: rows per :meth:`ScoreStore.add` call.

    Returns:
        The number of rows imported.

    Raises:
        RkdError: unknown format or extension; the message lists the choices.
        DataError: a malformed line; the message gives ``file:line`` and what was expected.
    """
    path = Path(path)
    if fmt is None:
        fmt = _BY_SUFFIX.get(path.suffix.lower())
        if fmt is None:
            raise RkdError(
                f"cannot tell the score format of {path} from its extension {path.suffix!r}; "
                f"extensions {sorted(_BY_SUFFIX)} are known, or pass a format from {FORMATS}"
            )
    parse = _PARSERS.get(fmt)
    if parse is None:
        raise RkdError(f"unknown score format {fmt!r}; choose from {FORMATS}")

    pairs: list[Pair] = []
    scores: list[float] = []
    total = 0
    for query_id, doc_id, score in _rows(path, parse):
        pairs.append(Pair(query_id, doc_id))
        scores.append(score)
        if len(pairs) == batch_size:
            store.add(pairs, np.asarray(scores, dtype=np.float32))
            total += len(pairs)
            pairs, scores = [], []
    if pairs:
        store.add(pairs, np.asarray(scores, dtype=np.float32))
        total += len(pairs)
    return total


def _rows(path: Path, parse: Callable[[str, int], Row | None]) -> Iterator[Row]:
    """Parses each non-blank line, turning a ``ValueError`` into a ``file:line`` DataError."""
    for lineno, line in iter_lines(path):
        try:
            row = parse(line, lineno)
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: {e}") from None
        if row is not None:
            yield row


def _score(text: object) -> float:
    # bool is an int to Python but never a score; nan/inf parse as floats but poison a store.
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"score {text!r} is not a number")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"score {text!r} is not finite")
    return value


def _parse_tsv(line: str, lineno: int) -> Row | None:
    fields = line.split("\t")
    if len(fields) != 3:
        raise ValueError(f"expected 3 tab-separated columns query_id, doc_id, score; got {len(fields)}")
    query_id, doc_id, score = fields
    if lineno == 1 and score.strip().lower() == "score":
        return None  # header
    if not query_id or not doc_id:
        raise ValueError("empty query_id or doc_id")
    return query_id, doc_id, _score(score)


def _parse_trec(line: str, lineno: int) -> Row | None:
    fields = line.split()
    if len(fields) != 6:
        raise ValueError(
            f"expected 6 whitespace-separated columns 'qid Q0 docid rank score tag'; got {len(fields)}"
        )
    query_id, _, doc_id, rank, score, _ = fields
    if not rank.lstrip("-").isdigit():
        raise ValueError(
            f"rank {rank!r} (column 4) is not an integer; expected 'qid Q0 docid rank score tag'"
        )
    return query_id, doc_id, _score(score)


def _parse_jsonl(line: str, lineno: int) -> Row | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(
            f'expected an object {{"query_id": ..., "doc_id": ..., "score": ...}}, got {record!r}'
        )
    missing = [k for k in ("query_id", "doc_id", "score") if k not in record]
    if missing:
        raise ValueError(
            f'missing field(s) {missing}; expected {{"query_id": ..., "doc_id": ..., "score": ...}}'
        )
    return _id("query_id", record["query_id"]), _id("doc_id", record["doc_id"]), _score(record["score"])


def _id(field: str, value: object) -> str:
    # Some corpora write numeric ids (MS MARCO qids); they name the same query as their string.
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{field} {value!r} is not a non-empty string or integer")


_PARSERS: dict[str, Callable[[str, int], Row | None]] = {
    "jsonl": _parse_jsonl,
    "trec": _parse_trec,
    "tsv": _parse_tsv,
}
# Built from the parsers, so the choices an error lists never drift from the code.
FORMATS = sorted(_PARSERS)
