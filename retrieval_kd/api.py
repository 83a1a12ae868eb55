"""The Python entry points: a student plus an index is a retriever."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from retrieval_kd.errors import RkdError
from retrieval_kd.protocols import Encoder, Index
from retrieval_kd.types import Run


class Retriever:
    """Searches an index with queries encoded by the student that built it.

    Args:
        student: a student object or a saved student folder.
        index: an index object or a saved index folder; its manifest must name the student's
            fingerprint, else the queries would land in a foreign vector space and it refuses.

    Example:
        >>> r = Retriever("runs/scifact/train/student", "runs/scifact/index/student")  # doctest: +SKIP
        >>> r.search(["does aspirin prevent cancer?"], k=3)  # doctest: +SKIP
        {'q0': {'4983': 0.61, ...}}
    """

    def __init__(self, student: Encoder | str | Path, index: Index | str | Path) -> None:
        from retrieval_kd.indexes import load_index
        from retrieval_kd.students import load_student

        loaded = load_student(student) if isinstance(student, str | Path) else student
        if not isinstance(loaded, Encoder) or loaded.role != "encoder":
            raise RkdError(
                f"a Retriever needs an encoder student; {getattr(loaded, 'kind', loaded)!r} is a "
                f"{getattr(loaded, 'role', 'non-student')} (rerank a first-stage run instead)"
            )
        self.student: Encoder = loaded
        self.index: Index = load_index(Path(index)) if isinstance(index, str | Path) else index
        self.index.check_encoder(self.student.fingerprint())

    def search(self, queries: Sequence[str] | Mapping[str, str], k: int = 10, batch_size: int = 32) -> Run:
        """Top-``k`` documents per query. A list of texts gets ids ``q0, q1, ...``; a mapping
        keeps its ids."""
        if isinstance(queries, Mapping):
            qids, texts = list(queries), list(queries.values())
        else:
            texts = list(queries)
            qids = [f"q{i}" for i in range(len(texts))]
        if not texts:
            return {}
        reps = self.student.encode_queries(texts, batch_size=batch_size)
        run: Run = self.index.search(qids, reps, k)
        return run
