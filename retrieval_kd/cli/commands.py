"""The stage commands: run, mine, score-teacher, import-scores, train, index, datasets.

Each parses its options, builds a stage config and calls one library function; the stage logic
lives in :mod:`retrieval_kd.stages`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from retrieval_kd.cli._common import cli_errors, out, print_table, progress, say

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="hub id or model folder")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="ir_datasets id or BEIR folder[:split]")]
BatchOpt = Annotated[int, typer.Option(min=1, help="texts per forward pass")]
NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        min=1,
        help="processes: N > 1 relaunches this command under torchrun (data-parallel training, one "
        "score shard per process; the CPU threads split between them)",
    ),
]


def relaunch_if_asked(nproc: int) -> None:
    """``--nproc N`` (N > 1): runs this same command line on N processes under torchrun and exits
    with its status."""
    if nproc > 1:
        import sys

        from retrieval_kd.distributed import relaunch, without_option

        raise typer.Exit(relaunch(nproc, without_option(sys.argv[1:], "--nproc")))


def parse_options(pairs: list[str]) -> dict[str, object]:
    """``["factory=IVF256,Flat", "nprobe=32"]`` → ``{"factory": "IVF256,Flat", "nprobe": 32}``:
    a value that parses as JSON is taken as such, anything else as a string."""
    from retrieval_kd.errors import RkdError

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RkdError(f"--option {pair!r}: expected KEY=VALUE, such as factory=HNSW32")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@cli_errors
def run(
    config: Annotated[Path, typer.Argument(help="recipe TOML (see configs/)")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    eval_on: Annotated[
        str,
        typer.Option(
            "--eval-on",
            help="test: evaluate on [data].eval (report.json); dev: on the dev split [data].dev carves "
            "from the training queries (report-dev.json), the split to tune a recipe on",
        ),
    ] = "test",
    nproc: NprocOpt = 1,
) -> None:
    """Run a recipe end to end: mine, score-teacher, train, index, eval; skip stages already done."""
    relaunch_if_asked(nproc)
    from retrieval_kd.config import load_config
    from retrieval_kd.distributed import is_main
    from retrieval_kd.eval.table import metrics_table
    from retrieval_kd.pipeline import run_recipe

    cfg = load_config(config)
    with progress() as p:
        report = run_recipe(cfg, out_dir, progress=p, say=say, eval_on=eval_on)
    if not is_main():
        return
    print_table(metrics_table(report["metrics"], list(cfg.eval.metrics)))
    ratio = report["student_over_teacher"].get(cfg.eval.metrics[0])
    if ratio is not None:
        out.print(f"student/teacher {cfg.eval.metrics[0]}: {ratio:.1%}")
    out.print(f"report: {out_dir / ('report.json' if eval_on == 'test' else 'report-dev.json')}")


@cli_errors
def mine(
    dataset: DatasetOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="retriever: hub id, folder")] = None,
    retriever: Annotated[
        str | None, typer.Option("--retriever", "-r", help="a retriever without a model (bm25), for --model")
    ] = None,
    negatives: Annotated[int, typer.Option(min=1, help="mined negatives per query")] = 30,
    kind: Annotated[str, typer.Option(help="the retriever's student kind")] = "dense",
    factory: Annotated[str, typer.Option(help="faiss index_factory string (dense retrievers)")] = "Flat",
    option: Annotated[
        list[str] | None, typer.Option("--option", help="KEY=VALUE option of its index: k1=1.2 (repeatable)")
    ] = None,
    batch_size: BatchOpt = 32,
    max_seq_length: Annotated[int | None, typer.Option(min=1, help="the retriever's token limit")] = None,
    absolute_margin: Annotated[
        float | None, typer.Option(min=0, help="drop negatives scoring above positive - margin (dense)")
    ] = None,
    relative_margin: Annotated[
        float | None, typer.Option(min=0, max=1, help="drop negatives above positive - |positive| * margin")
    ] = None,
) -> None:
    """Candidates: qrels positives + the retriever's top-k other documents, with provenance."""
    from dataclasses import replace

    from retrieval_kd.errors import RkdError
    from retrieval_kd.stages import MineStage, mine_stage
    from retrieval_kd.students import model_free

    if (model is None) == (retriever is None):
        raise RkdError("name the first-stage retriever: --model MODEL (with --kind) or --retriever bm25")
    if retriever is not None:
        model = kind = model_free(retriever)
    assert model is not None
    options = parse_options(option or [])
    if kind == "dense":
        options.setdefault("factory", factory)
    config = MineStage(dataset, model, out_dir, kind, negatives, batch_size, max_seq_length, options)
    config = replace(config, absolute_margin=absolute_margin, relative_margin=relative_margin)
    with progress() as p:
        result = mine_stage(config, p)
    out.print(result.message(), soft_wrap=True, highlight=False)


@cli_errors
def score_teacher(
    candidates: Annotated[Path, typer.Option(help="candidates folder from `rkd mine`")],
    dataset: DatasetOpt,
    model: ModelOpt,
    store: Annotated[Path, typer.Option(help="score store root")],
    teacher: Annotated[str, typer.Option(help="teacher kind")] = "cross-encoder",
    batch_size: BatchOpt = 64,
    max_length: Annotated[int | None, typer.Option(min=1)] = None,
    dtype: str = "float32",
    device: str = "auto",
    part_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="pairs per stored part, at most this lost on a crash [default: 512; 4096 on a GPU]"
        ),
    ] = None,
    shard: Annotated[str | None, typer.Option(help="I/N: score one shard (default from torchrun)")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", help="KEY=VALUE teacher option: template=..., yes=Yes, passes=5 (repeatable)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="time a sample and print the whole job's cost; write nothing")
    ] = False,
    sample: Annotated[int, typer.Option(min=1, help="teacher calls timed by --dry-run")] = 64,
) -> None:
    """Score candidates with a teacher into the score store; only missing pairs are scored."""
    from retrieval_kd.stages import ScoreStage, score_stage

    config = ScoreStage(
        candidates,
        dataset,
        teacher,
        model,
        store,
        batch_size,
        max_length,
        dtype,
        device,
        parse_options(option or []),
        part_size,
        shard,
    )
    if dry_run:
        from retrieval_kd.stages.estimate import estimate_stage

        for line in estimate_stage(config, sample).lines():
            out.print(line, soft_wrap=True, highlight=False)
        return
    with progress() as p:
        result = score_stage(config, p)
    out.print(result.message(), soft_wrap=True, highlight=False)


@cli_errors
def import_scores(
    path: Annotated[
        Path,
        typer.Argument(
            help="score file: TSV (qid, docid, score), Hofstätter TSV, TREC run, JSONL (per pair or "
            "PyLate lists), Parquet, sentence-transformers pickle"
        ),
    ],
    store: Annotated[Path, typer.Option(help="score store root")],
    teacher: Annotated[str, typer.Option(help="a name for the teacher that made the file (its fingerprint)")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="hofstatter, jsonl, parquet, pylate, st-pickle, trec or tsv (default: by extension "
            "and first line)",
        ),
    ] = None,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle", help="read a pickle (st-pickle): unpickling can run code, so trust its source"
        ),
    ] = False,
) -> None:
    """Import a shared score file into the store under a teacher name (all of it, or none)."""
    from retrieval_kd.scores.importers import import_file

    n, folder = import_file(store, teacher, path, fmt, allow_pickle=allow_pickle)
    out.print(f"imported {n} scores → {folder}")


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
    nproc: NprocOpt = 1,
) -> None:
    """Train a student from the score store with a score-space loss; a rerun after a crash
    resumes from the last checkpoint."""
    relaunch_if_asked(nproc)
    from retrieval_kd.config import load_config
    from retrieval_kd.distributed import is_main
    from retrieval_kd.stages import TrainStage, train_stage

    cfg = load_config(config)
    stage = TrainStage(
        candidates=candidates,
        store=scores,
        teacher=teacher,
        dataset=dataset or cfg.data.train,
        student=cfg.student,
        train=cfg.train,
        out=out_dir,
        provenance={"recipe": str(config)},
    )
    with progress() as p:
        result = train_stage(stage, p)
    if is_main():
        out.print(result.message(), soft_wrap=True, highlight=False)


@cli_errors
def index(
    model: ModelOpt,
    dataset: DatasetOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o")],
    kind: Annotated[str | None, typer.Option(help="index kind (default: the student's own)")] = None,
    factory: Annotated[
        str | None, typer.Option(help="faiss index_factory string: Flat, IVF256,PQ32, HNSW32")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="KEY=VALUE index option (repeatable)")
    ] = None,
    batch_size: BatchOpt = 32,
    dtype: Annotated[
        str, typer.Option(help="encoder weights: float32, bfloat16 or float16 (on a GPU); queries follow")
    ] = "float32",
) -> None:
    """Encode a corpus with a student into an index of its kind (FAISS for dense; GPU when
    faiss or torch sees one)."""
    from retrieval_kd.stages import IndexStage, index_stage

    options = parse_options(option or [])
    if factory is not None:
        options["factory"] = factory
    with progress() as p:
        result = index_stage(IndexStage(model, dataset, out_dir, kind, options, batch_size, dtype=dtype), p)
    out.print(result.message(), soft_wrap=True, highlight=False)


@cli_errors
def datasets(pattern: Annotated[str, typer.Argument(help="substring to filter ids")] = "") -> None:
    """List ir_datasets ids usable as --dataset (a BEIR folder path works too); ✓ marks those
    whose files are here, so they work offline."""
    from retrieval_kd.data.irds import list_datasets

    rows = list_datasets(pattern)
    if not rows:
        out.print(f"no ir_datasets id contains {pattern!r}")
    for dataset_id, offline in rows:
        out.print(f"{'✓' if offline else ' '} {dataset_id}", highlight=False)
    out.print(json.dumps({"count": len(rows), "offline": sum(o for _, o in rows)}), style="dim")
