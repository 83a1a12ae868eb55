"""A dev split carved from a training split, so recipes are tuned on data they never report.

``beir/scifact/train#dev:0.2`` is the fifth of the judged training queries whose hashed ids are
smallest; ``beir/scifact/train#train:0.2`` is the rest. Membership depends only on the query id
(sha256 of a fixed salt and the id), not on file order, the machine or the fraction of other
queries, so the two parts never overlap and a query stays on its side when the file is
reordered. ``beir/scifact/train#sample:40`` is 40 judged queries chosen the same way with
another salt (a subset for teachers too slow to score everything, such as an LLM on a CPU); the
carves nest: ``...#sample:40#train:0.2``. Both parts keep the whole corpus: a dev query's
relevant documents stay retrievable, as a test query's are. ir_datasets and BEIR have no such
carve (SciFact ships train and test only), hence this module.
"""

from __future__ import annotations

import hashlib

from retrieval_kd.data.base import Dataset
from retrieval_kd.errors import DataError
from retrieval_kd.types import Doc, Qrels

PARTS = ("dev", "train", "sample")
_SALT = b"rkd-dev-carve/1\0"
_SAMPLE_SALT = b"rkd-sample/1\0"


def parse_carve(spec: str) -> tuple[str, str, float] | None:
    """``"BASE#PART:FRACTION"`` (or ``"BASE#sample:COUNT"``) → (base, part, fraction or count);
    None for a spec without ``#``.

    Example:
        >>> parse_carve("beir/scifact/train#dev:0.2")
        ('beir/scifact/train', 'dev', 0.2)
        >>> parse_carve("beir/scifact/train") is None
        True
        >>> parse_carve("beir/scifact/train#sample:40#train:0.2")
        ('beir/scifact/train#sample:40', 'train', 0.2)
        >>> parse_carve("x#test:0.2")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.DataError: dataset 'x#test:0.2': expected BASE#dev:FRACTION, ...
        >>> parse_carve("x#sample:2.5")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.DataError: dataset 'x#sample:2.5': expected BASE#dev:FRACTION, ...
    """
    if "#" not in spec:
        return None
    base, _, carve = spec.rpartition("#")
    part, _, fraction = carve.partition(":")
    try:
        value = float(fraction)
    except ValueError:
        value = -1.0
    valid = value.is_integer() and value >= 1 if part == "sample" else 0.0 < value < 1.0
    if not base or part not in PARTS or not valid:
        raise DataError(
            f"dataset {spec!r}: expected BASE#dev:FRACTION, BASE#train:FRACTION "
            "(FRACTION between 0 and 1, exclusive) or BASE#sample:COUNT "
            "(a whole number of queries, at least 1)"
        )
    return base, part, value


def carve_spec(base: str, part: str, fraction: float) -> str:
    """The spec :func:`parse_carve` reads back (``fraction`` 0: ``base`` itself)."""
    return f"{base}#{part}:{fraction:g}" if fraction else base


def dev_ids(query_ids: list[str], fraction: float) -> set[str]:
    """The ``round(fraction · n)`` ids (at least one) with the smallest salted hashes.

    Example:
        >>> sorted(dev_ids([str(i) for i in range(10)], 0.3))
        ['0', '2', '6']
    """
    return _smallest(query_ids, max(1, round(fraction * len(query_ids))), _SALT)


def sample_ids(query_ids: list[str], count: int) -> set[str]:
    """The ``count`` ids with the smallest hashes under the sample salt.

    Example:
        >>> sorted(sample_ids([str(i) for i in range(10)], 3))
        ['1', '3', '6']
    """
    return _smallest(query_ids, count, _SAMPLE_SALT)


def _smallest(query_ids: list[str], n: int, salt: bytes) -> set[str]:
    ranked = sorted(query_ids, key=lambda q: hashlib.sha256(salt + q.encode("utf-8")).digest())
    return set(ranked[:n])


class Carved(Dataset):
    """One side of the carve of ``base``'s judged queries; the corpus is ``base``'s."""

    def __init__(self, base: Dataset, spec: str, part: str, fraction: float) -> None:
        self.base, self.part, self.fraction = base, part, fraction
        self.id = spec

    def _keep(self) -> set[str]:
        judged = sorted(self.base.queries)
        if len(judged) < 2:
            raise DataError(f"dataset {self.id!r}: {len(judged)} judged queries; a carve needs at least 2")
        if self.part == "sample":
            if self.fraction > len(judged):
                raise DataError(
                    f"dataset {self.id!r}: a sample of {self.fraction:g} queries; "
                    f"{self.base.id!r} has {len(judged)} judged queries"
                )
            return sample_ids(judged, int(self.fraction))
        dev = dev_ids(judged, self.fraction)
        if len(dev) == len(judged):
            raise DataError(f"dataset {self.id!r}: fraction {self.fraction:g} leaves no training query")
        return dev if self.part == "dev" else set(judged) - dev

    def _read_queries(self) -> dict[str, str]:
        keep = self._keep()
        return {qid: text for qid, text in self.base.topics.items() if qid in keep}

    def _read_docs(self) -> dict[str, Doc]:
        return self.base.docs

    def _read_qrels(self) -> Qrels:
        keep = self._keep()
        return {qid: judged for qid, judged in self.base.qrels.items() if qid in keep}

    def fingerprint(self) -> dict[str, object]:
        return {**super().fingerprint(), "carved_from": self.base.fingerprint()}
