"""What a server serves: one :class:`~retrieval_kd.api.Retriever` per index folder, opened with
the query encoder the index's manifest records, plus the texts of the corpus it was built on.

Nothing here knows an index kind: :func:`~retrieval_kd.indexes.load_index` opens any kind in the
registry, and the manifest's ``student_path`` / ``student_kind`` / ``student_max_seq_length``
say how to reopen its encoder (the same fields ``rkd eval`` reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval_kd.errors import RkdError
from retrieval_kd.systems import parse_index_spec

if TYPE_CHECKING:
    from retrieval_kd.api import Retriever
    from retrieval_kd.data.base import Dataset
    from retrieval_kd.types import Doc


@dataclass
class ServedIndex:
    """One searchable system.

    Attributes:
        name: how requests name it (``"index": "student"``).
        path: the index folder.
        retriever: its query encoder and index.
        size: documents in the index (the largest ``k`` a request may ask for).
        docs: doc id → document, or None when the server runs without document texts.
        dataset: the dataset id the texts came from (None without texts).
    """

    name: str
    path: Path
    retriever: Retriever
    size: int
    docs: dict[str, Doc] | None = None
    dataset: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What ``GET /indexes`` says about it."""
        manifest = self.retriever.index.manifest
        return {
            "name": self.name,
            "kind": self.retriever.index.kind,
            "size": self.size,
            "dataset": self.dataset or manifest.get("dataset"),
            "documents": self.docs is not None,
            "student_fingerprint": manifest.get("student_fingerprint") or "",
            "student_kind": manifest.get("student_kind"),
        }


def open_retriever(path: Path, cache: dict[tuple[Any, ...], Any] | None = None) -> Retriever:
    """The index at ``path`` with the query encoder its manifest records.

    Args:
        cache: students already opened, keyed by (path, kind, token limit), shared between
            indexes built by one encoder.

    Raises:
        RkdError: the folder is no index, records no encoder, or its encoder cannot be opened
            (one line naming the index folder and the encoder).
    """
    from retrieval_kd.api import Retriever
    from retrieval_kd.indexes import load_index
    from retrieval_kd.stages.index import recorded_encoder
    from retrieval_kd.students import open_student

    index = load_index(path)
    model = index.manifest.get("student_path")
    if not isinstance(model, str) or not model:
        raise RkdError(f"{path}: the index records no query encoder (manifest 'student_path'); rebuild it")
    kind, limit, dtype = recorded_encoder(index.manifest)
    key = (model, kind, limit, "auto", dtype)
    cache = {} if cache is None else cache
    if key not in cache:
        try:
            cache[key] = open_student(*key)
        except (RkdError, OSError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RkdError(
                f"{path}: cannot open the query encoder the index records ({model}): {reason}"
            ) from None
    return Retriever(cache[key], index)


def corpus_docs(
    index_path: Path, manifest: dict[str, Any], spec: str | None
) -> tuple[Dataset, dict[str, Doc]]:
    """The documents of the corpus an index was built on: ``spec`` when given, else the dataset
    the manifest records; either way checked against the manifest's corpus fingerprint.

    Raises:
        RkdError: no dataset is known, it cannot be opened, or its corpus is another one.
    """
    from retrieval_kd.data import load_dataset
    from retrieval_kd.indexing import corpus_fingerprint

    dataset_spec = spec or manifest.get("dataset")
    if not isinstance(dataset_spec, str) or not dataset_spec:
        raise RkdError(f"{index_path}: the index records no dataset; pass --dataset SPEC, or --no-documents")
    try:
        dataset = load_dataset(dataset_spec)
        docs = dataset.docs
    except RkdError as e:
        raise RkdError(
            f"{index_path}: cannot read the documents of {dataset_spec!r} ({e}); pass --dataset SPEC, "
            "or --no-documents to serve ids and scores only"
        ) from None
    recorded = manifest.get("corpus")
    if isinstance(recorded, str) and recorded != corpus_fingerprint(dataset):
        raise RkdError(
            f"{index_path} was built on the corpus of {manifest.get('dataset') or 'another dataset'} "
            f"(fingerprint {recorded}), not on the corpus of {dataset.id}: pass the dataset it was "
            "built on with --dataset"
        )
    return dataset, docs


def open_served(
    specs: Sequence[str], dataset: str | None = None, documents: bool = True
) -> list[ServedIndex]:
    """Opens every ``--index`` spec (``NAME=DIR`` or ``DIR``) with its encoder and documents.

    Args:
        specs: at least one index spec; names must differ.
        dataset: the corpus to take document texts from (default: each index's recorded one).
        documents: False serves ids and scores only (no corpus is read).

    Raises:
        RkdError: a duplicate name, or anything :func:`open_retriever` / :func:`corpus_docs`
            refuses.
    """
    if not specs:
        raise RkdError("no index to serve: pass --index DIR (repeatable)")
    students: dict[tuple[str, Any, Any], Any] = {}
    corpora: dict[tuple[str | None, str | None], tuple[Dataset, dict[str, Doc]]] = {}
    served: list[ServedIndex] = []
    for spec in specs:
        name, path = parse_index_spec(spec)
        if any(s.name == name for s in served):
            raise RkdError(f"two indexes named {name!r}: name them with --index NAME=DIR")
        retriever = open_retriever(path, students)
        manifest = retriever.index.manifest
        size = _index_size(retriever, path)
        docs = ds_id = None
        if documents:
            key = (dataset or manifest.get("dataset"), manifest.get("corpus"))
            if key not in corpora:
                corpora[key] = corpus_docs(path, manifest, dataset)
            ds, docs = corpora[key]
            ds_id = ds.id
        served.append(ServedIndex(name, path, retriever, size, docs, ds_id))
    return served


def _index_size(retriever: Retriever, path: Path) -> int:
    count = retriever.index.manifest.get("count")
    if isinstance(count, int):
        return count
    try:
        return len(retriever.index)  # type: ignore[arg-type]
    except TypeError:
        raise RkdError(f"{path}: the index records no document count (manifest 'count')") from None
