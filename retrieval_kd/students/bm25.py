"""BM25 as a retriever: an encoder whose "representations" are the texts themselves.

BM25 has no weights; everything that makes its scores (k1, b, the analyzer) belongs to the Lucene
index that holds the texts (``lucene-bm25``, :mod:`retrieval_kd.indexes.lucene_bm25`). So this
encoder passes texts through unchanged, and everything typed against the encoder role (mining,
``rkd index``, ``rkd eval beir``, ``api.Retriever``) runs BM25 with no special case. It is not
trainable: ``rkd train`` refuses it with one line.

Its model name is its kind, ``bm25``: ``rkd mine --retriever bm25``, ``rkd eval beir --retriever
bm25``, ``rkd index --model bm25`` and ``[mine] kind = "bm25"`` need no model folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json

NAME = "bm25"


class BM25Student:
    """The ``bm25`` retriever (encoder role, no weights).

    Example:
        >>> bm25 = BM25Student.from_pretrained("bm25")
        >>> bm25.index_kind, bm25.encode_queries(["solar power"])
        ('lucene-bm25', ['solar power'])
    """

    kind = NAME
    role = "encoder"
    index_kind = "lucene-bm25"
    needs_model = False  # its name is its model (see retrieval_kd.students.needs_model)

    def __init__(self, provenance: dict[str, Any] | None = None) -> None:
        self.model: Any = None  # nothing for a Trainer to optimise
        self.provenance: dict[str, Any] = {"retriever": NAME, **(provenance or {})}

    @classmethod
    def from_pretrained(
        cls,
        model: str = NAME,
        num_layers: int | None = None,
        max_seq_length: int | None = None,
        device: str = "auto",
        **options: Any,
    ) -> BM25Student:
        """The retriever; ``model`` must be its name, ``bm25``.

        Raises:
            RkdError: another model, layers, a token limit or options were given (BM25's k1 and
                b are options of its index: ``[mine.index]``, ``[index.options]``).
        """
        if str(model) != NAME:
            raise RkdError(f"the bm25 retriever has no weights: its model is {NAME!r}, got {model!r}")
        if num_layers is not None or max_seq_length is not None:
            raise RkdError("the bm25 retriever has no layers and no token limit: unset both")
        if options:
            raise RkdError(
                f"unknown bm25 option(s) {sorted(options)}: BM25's k1, b, stemmer and stopwords are "
                "options of its lucene-bm25 index ([mine.index] or [index.options])"
            )
        return cls()

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> BM25Student:
        from retrieval_kd.io import read_json_object

        meta = read_json_object(Path(path) / "rkd.json")
        provenance = meta.get("provenance")
        return cls(dict(provenance) if isinstance(provenance, dict) else None)

    def fingerprint(self) -> str:
        """Constant: the texts are the representations; the index records BM25's settings."""
        return hash_json({"kind": NAME, "representation": "text"})

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> list[str]:
        """Shapes: texts[N] → the same N texts."""
        return [str(t) for t in texts]

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> list[str]:
        """Shapes: texts[N] → the same N texts (``Doc.full_text``: title and text in one field)."""
        return [str(t) for t in texts]

    # -- no training -----------------------------------------------------------------------------

    def _untrainable(self) -> NoReturn:
        raise RkdError(
            "the bm25 retriever has no weights to train; use it to mine negatives ([mine] kind = "
            '"bm25", `rkd mine --retriever bm25`) or as a baseline (`rkd eval beir --retriever bm25`), '
            "and train a dense or splade [student]"
        )

    def scores(self, query_batch: Sequence[str], doc_groups: Sequence[Sequence[str]]) -> Any:
        """BM25 needs corpus statistics, which only its index has: search the index instead."""
        self._untrainable()

    def training_scores(self, model: Any, inputs: Sequence[Any], width: int) -> Any:
        self._untrainable()

    def trainer_classes(self) -> tuple[Any, Any]:
        self._untrainable()

    def training_callbacks(self) -> list[Any]:
        return []

    def weights_changed(self) -> None:
        """Nothing to recompute: there are no weights."""

    def save(self, path: Path, provenance: dict[str, Any] | None = None) -> None:
        """A folder with ``rkd.json`` alone, which :func:`~retrieval_kd.students.load_student` opens."""
        from retrieval_kd import __version__
        from retrieval_kd.io import atomic_write_json

        self.provenance = {**self.provenance, **(provenance or {})}
        Path(path).mkdir(parents=True, exist_ok=True)
        record = {"kind": NAME, "rkd_version": __version__, "student_fingerprint": self.fingerprint()}
        atomic_write_json(Path(path) / "rkd.json", {**record, "provenance": self.provenance})
