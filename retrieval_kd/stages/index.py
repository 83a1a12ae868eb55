"""The index stage: an encoder student + a corpus → an index of the student's kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_kd.artifacts import building, mark, stage_fingerprint
from retrieval_kd.distributed import all_agree, barrier, is_main
from retrieval_kd.errors import RkdError
from retrieval_kd.fingerprint import hash_json
from retrieval_kd.io import atomic_write_json, read_json
from retrieval_kd.progress import Progress, ensure
from retrieval_kd.stages._common import StageResult, adopt, model_hash, student_source
from retrieval_kd.timing import Phases, size


def index_fingerprint(
    student_hash: str,
    student_kind: str | None,
    corpus: str,
    max_seq_length: int | None,
    kind: str | None,
    options: Mapping[str, Any],
    dtype: str = "float32",
) -> str:
    """What identifies an index: the encoder (weights, family, token limit, dtype), the corpus
    and the index settings (float32, the default, leaves the fingerprints of older indexes as
    they were)."""
    return hash_json(
        {
            "student": student_hash,
            "student_kind": student_kind,
            "corpus": corpus,
            "max_seq_length": max_seq_length,
            "kind": kind,
            "options": dict(options),
            **({"dtype": dtype} if dtype != "float32" else {}),
        }
    )


@dataclass(frozen=True)
class IndexStage:
    """Settings of ``rkd index`` and of a recipe's ``[index]``.

    Attributes:
        model: a saved student folder, or any model folder / hub id (opened as ``student_kind``).
        dataset: whose corpus is indexed.
        out: the index folder to write.
        kind: an ``INDEXES`` name; None: the student's own ``index_kind``.
        options: the index kind's settings.
        student_kind: how to open ``model`` when it is not a saved rkd student.
        max_seq_length: the encoder's token limit when opened fresh (None: the model's own).
        reuse: index folders to adopt (hard-linked) when they already are this exact index.
        dtype: the encoder's weights while encoding (``bfloat16`` on a GPU: issue 13); the
            manifest records it, and queries are encoded the same way.
    """

    model: str
    dataset: str
    out: Path
    kind: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    student_kind: str | None = None
    max_seq_length: int | None = None
    reuse: tuple[Path, ...] = ()
    dtype: str = "float32"


def index_stage(config: IndexStage, progress: Progress | None = None) -> StageResult:
    """Builds the index unless ``config.out`` (or a ``reuse`` folder) already is this index."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.eval.cost import folder_bytes
    from retrieval_kd.indexing import build_index, corpus_fingerprint
    from retrieval_kd.protocols import Encoder
    from retrieval_kd.students import open_student

    dataset = load_dataset(config.dataset)
    fp = index_fingerprint(
        model_hash(config.model),
        config.student_kind,
        corpus_fingerprint(dataset),
        config.max_seq_length,
        config.kind,
        config.options,
        config.dtype,
    )
    if all_agree(lambda: stage_fingerprint(config.out) == fp):
        return StageResult("index", config.out, fp, False, "")
    if not is_main():
        barrier()
        return StageResult("index", config.out, fp, False, "indexed by rank 0")
    adopted = adopt(config.reuse, fp, config.out)  # subfolders too (a Lucene index keeps its own)
    if adopted is not None:
        barrier()
        return StageResult("index", config.out, fp, True, f"reused {adopted} → {config.out}")
    student = open_student(config.model, config.student_kind, config.max_seq_length, dtype=config.dtype)
    if not isinstance(student, Encoder) or student.role != "encoder":
        raise RkdError(
            f"{config.model}: a {student.kind} student is a {student.role}; only encoders build an index"
        )
    phases = Phases()
    index = build_index(
        student, dataset, config.kind, config.options, config.batch_size, progress=progress, phases=phases
    )
    index.manifest["student_path"] = student_source(config.model)
    index.manifest["student_kind"] = student.kind  # how evaluation reopens the query encoder
    index.manifest["student_max_seq_length"] = config.max_seq_length
    index.manifest["student_dtype"] = config.dtype
    with building(config.out) as tmp:
        # compressed kinds train here (PLAID's k-means takes minutes): a bar with its elapsed time
        writing = ensure(progress).task(f"building and writing the {index.kind} index", 1, unit="index")
        with phases.span("write"):
            index.save(tmp)
        writing.advance(1)
        build = {**phases.record(len(dataset.docs)), "bytes": folder_bytes(tmp)}
        build.update(search_rate(student, tmp, dataset.queries))
        manifest = read_json(tmp / "manifest.json")  # its "files" checksums stay as written
        atomic_write_json(tmp / "manifest.json", {**manifest, STATS_KEY: build})
        mark(tmp, "index", fp)
    barrier()
    qps = f", {build['qps']:,.0f} QPS ({build['qps_queries']} queries, k=10)" if build.get("qps") else ""
    return StageResult(
        "index",
        config.out,
        fp,
        True,
        f"{index.kind}, student {student.fingerprint()} → {config.out}\n"
        f"  {phases.summary(len(dataset.docs), 'docs')}; {size(build['bytes'])} on disk{qps}",
    )


def recorded_encoder(manifest: Mapping[str, Any]) -> tuple[str | None, int | None, str]:
    """How an index's documents were encoded, for opening its query encoder the same way:
    ``(student kind, token limit, dtype)`` as :func:`~retrieval_kd.students.open_student` takes
    them (``float32`` for indexes that predate the dtype record)."""
    kind, limit, dtype = (
        manifest.get(k) for k in ("student_kind", "student_max_seq_length", "student_dtype")
    )
    return (
        kind if isinstance(kind, str) else None,
        limit if isinstance(limit, int) else None,
        dtype if isinstance(dtype, str) else "float32",
    )


QPS_QUERIES = 200
STATS_KEY = "build_stats"
"""The manifest key of what building cost (time by phase, bytes, QPS); not ``build``, which some
index kinds use for their own build settings (Seismic, PLAID)."""


def search_rate(student: Any, folder: Path, queries: Mapping[str, str]) -> dict[str, Any]:
    """Queries per second of the saved index at ``folder`` (loaded as a server would), over up to
    :data:`QPS_QUERIES` of the dataset's queries in one batched pass, k=10, query encoding
    included, after a warm-up of 8; nothing when the dataset has no queries."""
    import time

    from retrieval_kd.api import Retriever
    from retrieval_kd.indexes import load_index

    chosen = dict(list(queries.items())[:QPS_QUERIES])
    if not chosen:
        return {}
    retriever = Retriever(student, load_index(folder))
    retriever.search(dict(list(chosen.items())[:8]), k=10)
    began = time.perf_counter()
    retriever.search(chosen, k=10)
    seconds = time.perf_counter() - began
    return {"qps": round(len(chosen) / seconds, 1), "qps_queries": len(chosen)}
