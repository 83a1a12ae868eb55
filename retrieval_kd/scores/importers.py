"""Imports the teacher score files people already share into a :class:`ScoreStore`.

Formats (chosen by file extension unless given):

- ``tsv`` (``.tsv``): ``query_id<TAB>doc_id<TAB>score``, the common cross-encoder score-file
  layout. A first line whose third column is literally ``score`` is taken as a header.
- ``trec`` (``.trec``, ``.run``): ``qid Q0 docid rank score tag``, whitespace-separated.
- ``jsonl`` (``.jsonl``): one ``{"query_id": ..., "doc_id": ..., "score": ...}`` per line.

Blank lines are skipped. A pair that occurs twice keeps its later score. Ids are non-empty
strings without whitespace (JSONL also takes integers); a score is a finite number within
float32's range (the store keeps float32). A file with no scores (empty, or only a header) is
an error.

An import is all of a file or none of it: its parts are staged and committed together at the
end (:meth:`ScoreStore.staged`), so a bad row at line N, or a kill, leaves the store as it was,
and a rerun starts the import again from the first line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.io import DECIMAL, check_id, iter_lines, parse_json_line, show
from retrieval_kd.scores import folder
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.types import Pair

Row = tuple[str, str, float]

_BY_SUFFIX = {".jsonl": "jsonl", ".trec": "trec", ".run": "trec", ".tsv": "tsv"}


def import_file(root: Path, teacher: str, path: Path, fmt: str | None = None) -> tuple[int, Path]:
    """``rkd import-scores``: every score in ``path`` into the store of ``teacher`` under
    ``root``, or none of them. A teacher folder this call created is removed again when the
    import fails, so a failed import into a new store leaves no empty store behind.

    Returns:
        The number of rows imported and the teacher folder.
    """
    created = not (Path(root) / teacher / "manifest.json").exists()
    writer = "0"  # ScoreStore.open's default: what an import always wrote as
    store = ScoreStore.open(root, teacher, {"kind": "imported", "source": str(path)}, writer=writer)
    try:
        return import_scores(store, path, fmt), store.path
    except BaseException:
        if created:
            folder.remove_if_empty(store.path, writer)
        raise
    finally:
        store.close()


def import_scores(store: ScoreStore, path: Path, fmt: str | None = None, *, batch_size: int = 100_000) -> int:
    """Adds every score in ``path`` to ``store``, ``batch_size`` rows per stored part, all of them
    or (on an error) none.

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
    with store.staged():
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
        if not total:
            raise DataError(f"{path}: no scores (the file is empty or holds only a header)")
    return total


def _rows(path: Path, parse: Callable[[str, str, int], Row | None]) -> Iterator[Row]:
    """Parses each non-blank line, turning a ``ValueError`` into a ``file:line`` DataError."""
    for lineno, line in iter_lines(path):
        where = f"{path}:{lineno}"
        try:
            row = parse(line, where, lineno)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if row is not None:
            yield row


# The store keeps float32: a larger finite score would become inf there.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _score(value: object) -> float:
    """A score as the store keeps it: a finite number within float32's range."""
    if isinstance(value, str):
        word = value.strip(" ")
        if word.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise ValueError(f"score {show(value)} is not finite")
        if not DECIMAL.fullmatch(word):
            raise ValueError(f"score {show(value)} is not a number")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        # bool is an int to Python but never a score
        raise ValueError(f"score {show(value)} is not a number")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"score {show(value)} is not finite")
    try:
        number = float(value)
    except OverflowError:  # an int past float64's range
        number = math.inf
    if not abs(number) <= _FLOAT32_MAX:
        raise ValueError(f"score {show(value)} is outside float32's range (the store keeps float32)")
    return number


def _parse_tsv(line: str, where: str, lineno: int) -> Row | None:
    fields = line.split("\t")
    if len(fields) != 3:
        raise ValueError(f"expected 3 tab-separated columns query_id, doc_id, score; got {len(fields)}")
    query_id, doc_id, score = fields
    if lineno == 1 and score.strip().lower() == "score":
        return None  # header
    return check_id(query_id, "query_id", where), check_id(doc_id, "doc_id", where), _score(score)


def _parse_trec(line: str, where: str, lineno: int) -> Row | None:
    fields = line.split()
    if len(fields) != 6:
        raise ValueError(
            f"expected 6 whitespace-separated columns 'qid Q0 docid rank score tag'; got {len(fields)}"
        )
    query_id, _, doc_id, rank, score, _ = fields
    if not re.fullmatch(r"-?[0-9]+", rank):
        raise ValueError(
            f"rank {show(rank)} (column 4) is not an integer; expected 'qid Q0 docid rank score tag'"
        )
    return check_id(query_id, "qid", where), check_id(doc_id, "docid", where), _score(score)


def _parse_jsonl(line: str, where: str, lineno: int) -> Row | None:
    record = parse_json_line(line, where, "malformed JSON")
    if not isinstance(record, dict):
        raise ValueError(
            f'expected an object {{"query_id": ..., "doc_id": ..., "score": ...}}, got {show(record)}'
        )
    missing = [k for k in ("query_id", "doc_id", "score") if k not in record]
    if missing:
        raise ValueError(
            f'missing field(s) {missing}; expected {{"query_id": ..., "doc_id": ..., "score": ...}}'
        )
    # Some corpora write numeric ids (MS MARCO qids); they name the same query as their string.
    query_id = check_id(record["query_id"], "query_id", where)
    return query_id, check_id(record["doc_id"], "doc_id", where), _score(record["score"])


_PARSERS: dict[str, Callable[[str, str, int], Row | None]] = {
    "jsonl": _parse_jsonl,
    "trec": _parse_trec,
    "tsv": _parse_tsv,
}
# Built from the parsers, so the choices an error lists never drift from the code.
FORMATS = sorted(_PARSERS)
