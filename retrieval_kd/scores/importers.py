"""Imports the teacher score files people already share into a :class:`ScoreStore`.

Formats (chosen by file extension, and for ``.tsv``/``.jsonl`` by the first line, unless given):

- ``tsv`` (``.tsv``): ``query_id<TAB>doc_id<TAB>score``, the common cross-encoder score-file
  layout. A first line whose third column is literally ``score`` is taken as a header.
- ``hofstatter`` (``.tsv`` with 5 columns): ``pos_score<TAB>neg_score<TAB>qid<TAB>pos_pid<TAB>neg_pid``,
  the Margin-MSE teacher files of Hofstätter et al. (arXiv:2010.02666): two pairs per line. A pair
  on several lines (the positive, on every line of its query) must have the same score on each,
  else the import fails naming both lines.
- ``trec`` (``.trec``, ``.run``): ``qid Q0 docid rank score tag``, whitespace-separated.
- ``jsonl`` (``.jsonl``): one ``{"query_id": ..., "doc_id": ..., "score": ...}`` per line.
- ``pylate`` (``.jsonl`` whose first record has ``document_ids``): one
  ``{"query_id": ..., "document_ids": [...], "scores": [...]}`` per line, as PyLate's and
  sentence-transformers' distillation datasets hold them.
- ``parquet`` (``.parquet``): columns ``query_id``, ``doc_id`` (strings or integers), ``score``.
- ``st-pickle`` (``.pkl``, ``.pickle``, either ``.gz``): the sentence-transformers cross-encoder
  score dict ``{qid: {pid: score}}``, a (gzipped) pickle. Unpickling can run code, so it is read
  only with ``allow_pickle`` (``--allow-pickle``), and then only dicts, strings and numbers load
  (:mod:`.binary`).

Blank lines are skipped. Apart from ``hofstatter``'s, a pair that occurs twice keeps its later
score. Ids are non-empty strings without whitespace (JSON, Parquet and pickles also take
integers); a score is a finite number within float32's range (the store keeps float32). A file
with no scores (empty, or only a header) is an error.

Files are read in chunks of ``batch_size`` rows, each stored as one part, so a file larger than
memory imports (the pickle excepted: it is one object). An import is all of a file or none of
it: its parts are staged and committed together at the end (:meth:`ScoreStore.staged`), so a bad
row at line N, or a kill, leaves the store as it was, and a rerun starts the import again from
the first line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval_kd.errors import DataError, RkdError
from retrieval_kd.io import DECIMAL, check_id, iter_lines, parse_json_line, show
from retrieval_kd.scores import binary, folder
from retrieval_kd.scores.binary import Chunk
from retrieval_kd.scores.store import ScoreStore
from retrieval_kd.types import Pair

Row = tuple[str, str, float]

_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".trec": "trec",
    ".run": "trec",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pkl": "st-pickle",
    ".pickle": "st-pickle",
}


def import_file(
    root: Path, teacher: str, path: Path, fmt: str | None = None, *, allow_pickle: bool = False
) -> tuple[int, Path]:
    """``rkd import-scores``: every score in ``path`` into the store of ``teacher`` under
    ``root``, or none of them. A teacher folder this call created is removed again when the
    import fails, so a failed import into a new store leaves no empty store behind.

    Returns:
        The number of rows imported and the teacher folder.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "st-pickle" and not allow_pickle:
        binary.refuse_pickle(path)  # before a store folder is created
    created = not (Path(root) / teacher / "manifest.json").exists()
    writer = "0"  # ScoreStore.open's default: what an import always wrote as
    spec = {"kind": "imported", "source": str(path), "format": fmt}
    store = ScoreStore.open(root, teacher, spec, writer=writer)
    try:
        return import_scores(store, path, fmt, allow_pickle=allow_pickle), store.path
    except BaseException:
        if created:
            folder.remove_if_empty(store.path, writer)
        raise
    finally:
        store.close()


def detect_format(path: Path) -> str:
    """The format of ``path`` from its extension (``.gz`` looked through), and for ``.tsv`` and
    ``.jsonl`` from its first non-blank line (5 columns: hofstatter; ``document_ids``: pylate).

    Raises:
        RkdError: an unknown extension; the message lists the known ones and the formats.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    suffix = suffixes[-2] if len(suffixes) > 1 and suffixes[-1] == ".gz" else (suffixes or [""])[-1]
    fmt = _BY_SUFFIX.get(suffix)
    if fmt is None or (suffix == ".gz") or (suffixes[-1:] == [".gz"] and fmt != "st-pickle"):
        raise RkdError(
            f"cannot tell the score format of {path} from its extension {''.join(suffixes[-2:])!r}; "
            f"extensions {sorted(_BY_SUFFIX)} are known (.pkl.gz too), or pass a format from {FORMATS}"
        )
    if fmt in ("tsv", "jsonl"):
        first = next(iter_lines(path), (0, ""))[1]
        if fmt == "tsv" and len(first.split("\t")) == 5:
            return "hofstatter"
        if fmt == "jsonl" and '"document_ids"' in first:
            return "pylate"
    return fmt


def import_scores(
    store: ScoreStore,
    path: Path,
    fmt: str | None = None,
    *,
    batch_size: int = 100_000,
    allow_pickle: bool = False,
) -> int:
    """Adds every score in ``path`` to ``store``, ``batch_size`` rows per stored part, all of them
    or (on an error) none.

    Args:
        store: an open (writable) store; the file's scores must come from its teacher.
        path: the score file.
        fmt: one of ``FORMATS``; by default chosen by :func:`detect_format`.
        batch_size: rows per :meth:`ScoreStore.add` call.
        allow_pickle: read an ``st-pickle`` file (unpickling can run code: trust its source).

    Returns:
        The number of scores imported (for ``hofstatter``, of distinct pairs: its positives repeat).

    Raises:
        RkdError: unknown format or extension (the message lists the choices), or a pickle
            without ``allow_pickle``.
        DataError: a malformed line; the message gives ``file:line`` and what was expected.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise RkdError(f"unknown score format {fmt!r}; choose from {FORMATS}")
    if fmt == "st-pickle" and not allow_pickle:
        binary.refuse_pickle(path)
    total = 0
    seen: list[pa.Table] = []  # hofstatter: every row, to check that a pair's duplicates agree
    with store.staged():
        for queries, docs, scores, lines in _chunks(path, fmt, batch_size):
            total += len(queries)
            if fmt == "hofstatter":
                seen.append(pa.table({"q": queries, "d": docs, "s": scores, "line": lines}))
                # A positive stands on every line of its query: store it once a chunk (checked below).
                unique = dict(zip(map(Pair, queries, docs), scores.tolist(), strict=True))
                store.add(list(unique), np.asarray(list(unique.values()), np.float32))
            else:
                store.add([Pair(q, d) for q, d in zip(queries, docs, strict=True)], scores)
        if not total:
            raise DataError(f"{path}: no scores (the file is empty or holds only a header)")
        if seen:
            total = check_duplicates_agree(path, pa.concat_tables(seen))
    return total


def check_duplicates_agree(path: Path, rows: pa.Table) -> int:
    """The number of distinct pairs in ``rows``; raises naming the first pair (in key order)
    scored differently on two lines.

    Shapes:
        rows: columns q, d (strings), s (float32), line (int64)
    """
    ordered = rows.take(
        pc.sort_indices(rows, sort_keys=[("q", "ascending"), ("d", "ascending"), ("line", "ascending")])
    )
    n = ordered.num_rows
    if n < 2:
        return int(n)
    cols = {k: ordered.column(k) for k in ("q", "d", "s")}
    same = [
        np.asarray(pc.equal(cols[k].slice(1), cols[k].slice(0, n - 1)).to_numpy(zero_copy_only=False))
        for k in cols
    ]
    clash = np.flatnonzero(same[0] & same[1] & ~same[2])
    if clash.size:
        i = int(clash[0])
        q, d = ordered.column("q")[i].as_py(), ordered.column("d")[i].as_py()
        a, b = (ordered.column("s")[j].as_py() for j in (i, i + 1))
        la, lb = (ordered.column("line")[j].as_py() for j in (i, i + 1))
        raise DataError(
            f"{path}:{lb}: pair (query {q!r}, doc {d!r}) scored {b!r} here but {a!r} on line {la}; "
            "a pair's scores must agree across lines"
        )
    return int(n) - int((same[0] & same[1]).sum())


def _chunks(path: Path, fmt: str, batch_size: int) -> Iterator[Chunk]:
    if fmt == "parquet":
        yield from binary.read_parquet(path, batch_size, _check_scores)
        return
    if fmt == "st-pickle":
        yield from binary.read_st_pickle(path, batch_size, _score)
        return
    parse = _PARSERS[fmt]
    queries: list[str] = []
    docs: list[str] = []
    scores: list[float] = []
    lines: list[int] = []
    for lineno, line in iter_lines(path):
        where = f"{path}:{lineno}"
        try:
            rows = parse(line, where, lineno)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        for q, d, s in rows:
            queries.append(q)
            docs.append(d)
            scores.append(s)
            lines.append(lineno)
        if len(queries) >= batch_size:
            yield queries, docs, np.asarray(scores, np.float32), np.asarray(lines, np.int64)
            queries, docs, scores, lines = [], [], [], []
    if queries:
        yield queries, docs, np.asarray(scores, np.float32), np.asarray(lines, np.int64)


# The store keeps float32: a score at or past this becomes inf there. Below it, a score rounds to
# float32's largest value at most (halfway to 2**128), so "3.4028235e+38", the shortest decimal of
# that largest value, reads back to it.
_FLOAT32_MAX = 2.0**128 - 2.0**103


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
    if not abs(number) < _FLOAT32_MAX:
        raise ValueError(f"score {show(value)} is outside float32's range (the store keeps float32)")
    return number


def _check_scores(values: np.ndarray, where: Callable[[int], str]) -> None:
    """The vectorised :func:`_score` for a column of numbers (Parquet): raises naming the first bad
    row through ``where(row)``."""
    bad = np.flatnonzero(~(np.abs(values) < _FLOAT32_MAX))
    if bad.size:
        i = int(bad[0])
        problem = (
            "not finite"
            if not math.isfinite(values[i])
            else "outside float32's range (the store keeps float32)"
        )
        raise DataError(f"{where(i)}: score {float(values[i])!r} is {problem}")


def _parse_tsv(line: str, where: str, lineno: int) -> list[Row]:
    fields = line.split("\t")
    if len(fields) != 3:
        raise ValueError(f"expected 3 tab-separated columns query_id, doc_id, score; got {len(fields)}")
    query_id, doc_id, score = fields
    if lineno == 1 and score.strip().lower() == "score":
        return []  # header
    return [(check_id(query_id, "query_id", where), check_id(doc_id, "doc_id", where), _score(score))]


def _parse_hofstatter(line: str, where: str, lineno: int) -> list[Row]:
    fields = line.split("\t")
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 tab-separated columns pos_score, neg_score, qid, pos_pid, neg_pid; got {len(fields)}"
        )
    pos_score, neg_score, qid, pos, neg = fields
    query_id = check_id(qid, "qid", where)
    positive, negative = check_id(pos, "pos_pid", where), check_id(neg, "neg_pid", where)
    return [(query_id, positive, _score(pos_score)), (query_id, negative, _score(neg_score))]


def _parse_trec(line: str, where: str, lineno: int) -> list[Row]:
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
    return [(check_id(query_id, "qid", where), check_id(doc_id, "docid", where), _score(score))]


def _object(line: str, where: str, fields: tuple[str, ...]) -> dict[str, object]:
    record = parse_json_line(line, where, "malformed JSON")
    shape = "{" + ", ".join(f'"{f}": ...' for f in fields) + "}"
    if not isinstance(record, dict):
        raise ValueError(f"expected an object {shape}, got {show(record)}")
    missing = [k for k in fields if k not in record]
    if missing:
        raise ValueError(f"missing field(s) {missing}; expected {shape}")
    return record


def _parse_jsonl(line: str, where: str, lineno: int) -> list[Row]:
    record = _object(line, where, ("query_id", "doc_id", "score"))
    # Some corpora write numeric ids (MS MARCO qids); they name the same query as their string.
    query_id = check_id(record["query_id"], "query_id", where)
    return [(query_id, check_id(record["doc_id"], "doc_id", where), _score(record["score"]))]


def _parse_pylate(line: str, where: str, lineno: int) -> list[Row]:
    record = _object(line, where, ("query_id", "document_ids", "scores"))
    query_id = check_id(record["query_id"], "query_id", where)
    docs, scores = record["document_ids"], record["scores"]
    if not isinstance(docs, list) or not isinstance(scores, list) or len(docs) != len(scores):
        raise ValueError(
            f"document_ids and scores must be lists of one length, got {show(docs, 30)}, {show(scores, 30)}"
        )
    return [
        (query_id, check_id(d, "document_ids", where), _score(s)) for d, s in zip(docs, scores, strict=True)
    ]


_PARSERS: dict[str, Callable[[str, str, int], list[Row]]] = {
    "hofstatter": _parse_hofstatter,
    "jsonl": _parse_jsonl,
    "pylate": _parse_pylate,
    "trec": _parse_trec,
    "tsv": _parse_tsv,
}
# Built from the readers, so the choices an error lists never drift from the code.
FORMATS = sorted([*_PARSERS, "parquet", "st-pickle"])
