"""``rkd``: one typer sub-command per pipeline stage.

Commands parse, build a config and call one library function. Heavy libraries (torch,
transformers, faiss, ranx) are imported inside the commands, so ``rkd --help`` is instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from retrieval_kd.cli import commands, doctor, evaluate, scores, serve

app = typer.Typer(
    name="rkd",
    help="Knowledge distillation for retrieval: score with a teacher, train a student, index, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts name config sections: "[train]" must print as written
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show INFO log lines (default: WARNING and up).")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads for torch, faiss and BLAS (default: all cores). Results are bit-for-bit "
            "repeatable on one kind of CPU at one thread count.",
        ),
    ] = None,
) -> None:
    import os

    from retrieval_kd.cli._common import setup_logging
    from retrieval_kd.determinism import THREADS_ENV

    if threads is not None:  # before torch or faiss is imported: OpenMP reads it at start
        os.environ["OMP_NUM_THREADS"] = os.environ[THREADS_ENV] = str(threads)

    ctx.call_on_close(setup_logging(verbose))


app.command("run")(commands.run)
app.command("mine")(commands.mine)
app.command("score-teacher")(commands.score_teacher)
app.command("import-scores")(commands.import_scores)
app.command("train")(commands.train)
app.command("index")(commands.index)
app.command("datasets")(commands.datasets)
app.command("doctor")(doctor.doctor)
app.command("serve")(serve.serve)
app.add_typer(evaluate.app, name="eval")
app.add_typer(scores.app, name="scores")


def main() -> None:
    app()
