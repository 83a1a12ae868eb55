"""The stage commands: run, mine, score-teacher, import-scores, train, index, datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from retrieval_kd.cli._common import cli_errors, out, progress, say
from retrieval_kd.errors import RkdError

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="hub id or model folder")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="ir_datasets id or BEIR folder[:split]")]


def _shard(text: str | None) -> tuple[int, int]:
    """``i/n`` from the flag, else torchrun's RANK/WORLD_SIZE, else the whole set."""
    if text is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise RkdError(f"--shard {text!r}: expected I/N such as 0/4") from None
    if not 0 <= i < n:
        raise RkdError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


@cli_errors
def run(
    config: Annotated[Path, typer.Argument(help="recipe TOML (see configs/)")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
) -> None:
    """Run a recipe end to end: mine, score-teacher, train, index, eval; skip stages already done."""
    from retrieval_kd.config import load_config
    from retrieval_kd.eval.table import metrics_table
    from retrieval_kd.pipeline import Pipeline

    cfg = load_config(config)
    with progress() as p:
        report = Pipeline(cfg, out_dir, progress=p, say=say).run()
    out.print(metrics_table(report["metrics"], list(cfg.eval.metrics)))
    ratio = report["student_over_teacher"].get(cfg.eval.metrics[0])
    if ratio is not None:
        out.print(f"student/teacher {cfg.eval.metrics[0]}: {ratio:.1%}")
    out.print(f"report: {out_dir / 'report.json'}")


@cli_errors
def mine(
    dataset: DatasetOpt,
    model: ModelOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o")],
    negatives: Annotated[int, typer.Option(help="mined negatives per query")] = 30,
    factory: Annotated[str, typer.Option(help="faiss index_factory string")] = "Flat",
    batch_size: int = 32,
) -> None:
    """Candidates: qrels positives + the model's top-k other documents, with provenance."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.mine import MineConfig
    from retrieval_kd.mine import mine as do_mine
    from retrieval_kd.models import resolve_model
    from retrieval_kd.students.dense import DenseStudent

    ds = load_dataset(dataset)
    retriever = DenseStudent.from_pretrained(model)
    with progress() as p:
        cands, index = do_mine(ds, retriever, MineConfig(negatives, factory, batch_size), progress=p)
    cands.save(out_dir)
    index.manifest["student_path"] = resolve_model(model)
    index.manifest["dataset"] = ds.id
    index.save(out_dir / "index")
    out.print(f"{len(cands.items)} queries, {len(cands.pairs())} pairs → {out_dir / 'candidates.jsonl'}")


@cli_errors
def score_teacher(
    candidates: Annotated[Path, typer.Option(help="candidates folder from `rkd mine`")],
    dataset: DatasetOpt,
    model: ModelOpt,
    store: Annotated[Path, typer.Option(help="score store root")],
    teacher: Annotated[str, typer.Option(help="teacher kind")] = "cross-encoder",
    batch_size: int = 64,
    max_length: int | None = None,
    dtype: str = "float32",
    device: str = "auto",
    part_size: Annotated[
        int, typer.Option(help="pairs per stored part: at most this is lost on a crash")
    ] = 512,
    shard: Annotated[str | None, typer.Option(help="I/N: score one shard (default from torchrun)")] = None,
) -> None:
    """Score candidates with a teacher into the score store; only missing pairs are scored."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidates
    from retrieval_kd.scores.scoring import score_pairs
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.teachers import TEACHERS, build_teacher

    TEACHERS.check(teacher)
    i, n = _shard(shard)
    ds = load_dataset(dataset)
    cands = Candidates.load(candidates, corpus=ds.docs)
    t = build_teacher(
        teacher, model, max_length=max_length, dtype=dtype, batch_size=batch_size, device=device
    )
    pairs = cands.pairs()
    writer = f"shard{i}of{n}"
    with ScoreStore.open(store, t.fingerprint(), t.spec(), writer=writer) as st, progress() as p:  # type: ignore[attr-defined]
        task = p.task("teacher scoring", len(st.missing(pairs)), unit="pairs")
        scored = score_pairs(
            st,
            t,
            pairs,
            ds.queries,
            ds.doc_texts(),
            batch_size=part_size,
            shard=(i, n),
            progress=task.advance,
        )
    out.print(f"teacher {t.fingerprint()}: scored {scored} pairs; store holds {len(st)} → {st.path}")


@cli_errors
def import_scores(
    path: Annotated[Path, typer.Argument(help="score file: TSV (qid, docid, score), TREC run or JSONL")],
    store: Annotated[Path, typer.Option(help="score store root")],
    teacher: Annotated[str, typer.Option(help="a name for the teacher that made the file (its fingerprint)")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, trec or tsv (default: by extension)")
    ] = None,
) -> None:
    """Import a shared score file into the store under a teacher name."""
    from retrieval_kd.scores.importers import import_scores as do_import
    from retrieval_kd.scores.store import ScoreStore

    with ScoreStore.open(store, teacher, {"kind": "imported", "source": str(path)}) as st:
        n = do_import(st, path, fmt)
    out.print(f"imported {n} scores → {st.path}")


@cli_errors
def train(
    config: Annotated[Path, typer.Argument(help="recipe TOML: [student] and [train] are used")],
    candidates: Annotated[Path, typer.Option(help="candidates folder")],
    scores: Annotated[Path, typer.Option(help="score store root")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="student folder to write")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="default: [data].train")] = None,
    teacher: Annotated[
        str | None, typer.Option(help="teacher fingerprint, if the store holds several")
    ] = None,
) -> None:
    """Train a student from the score store with a score-space loss."""
    from dataclasses import asdict

    from retrieval_kd.config import load_config
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidates
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.students import build_student
    from retrieval_kd.train.trainer import train_student

    cfg = load_config(config)
    ds = load_dataset(dataset or cfg.data.train)
    cands = Candidates.load(candidates, corpus=ds.docs)
    st = ScoreStore.load(scores, teacher)
    s = cfg.student
    student = build_student(s.kind, s.model, num_layers=s.num_layers, max_seq_length=s.max_seq_length)
    with progress() as p:
        log = train_student(
            student,
            cands,
            st,
            ds.queries,
            ds.doc_texts(),
            cfg.train,
            out_dir,
            provenance={"recipe": str(config), "data": ds.fingerprint(), "config": asdict(cfg)},
            progress=p,
        )
    out.print(f"{len(log)} steps, loss {log[0]['loss']:.4f} → {log[-1]['loss']:.4f}; student → {out_dir}")


@cli_errors
def index(
    model: ModelOpt,
    dataset: DatasetOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o")],
    factory: Annotated[
        str, typer.Option(help="faiss index_factory string: Flat, IVF256,PQ32, HNSW32")
    ] = "Flat",
    batch_size: int = 32,
) -> None:
    """Encode a corpus with a student into a FAISS index (GPU when faiss or torch sees one)."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.mine import build_dense_index
    from retrieval_kd.students import load_student

    ds = load_dataset(dataset)
    student = load_student(model)
    with progress() as p:
        idx = build_dense_index(student, ds, factory, batch_size, p)
    idx.manifest["student_path"] = str(Path(model).resolve()) if Path(model).exists() else model
    idx.manifest["dataset"] = ds.id
    idx.save(out_dir)
    out.print(f"{len(ds.docs)} docs, {factory}, student {student.fingerprint()} → {out_dir}")


@cli_errors
def datasets(pattern: Annotated[str, typer.Argument(help="substring to filter ids")] = "") -> None:
    """List ir_datasets ids usable as --dataset (a BEIR folder path works too)."""
    from retrieval_kd.data.irds import list_ids

    ids = list_ids(pattern)
    out.print("\n".join(ids) if ids else f"no ir_datasets id contains {pattern!r}")
    out.print(json.dumps({"count": len(ids)}), style="dim")
