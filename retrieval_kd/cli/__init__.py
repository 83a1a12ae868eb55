"""``rkd``: one typer sub-command per pipeline stage.

Commands parse, build a config and call one library function. Heavy libraries (torch,
transformers, faiss, ranx) are imported inside the commands, so ``rkd --help`` is instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from retrieval_kd.cli import commands, evaluate

app = typer.Typer(
    name="rkd",
    help="Knowledge distillation for retrieval: score with a teacher, train a student, index, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also show INFO log lines (default: WARNING and up).")
    ] = False,
) -> None:
    from retrieval_kd.cli._common import setup_logging

    ctx.call_on_close(setup_logging(verbose))


app.command("run")(commands.run)
app.command("mine")(commands.mine)
app.command("score-teacher")(commands.score_teacher)
app.command("import-scores")(commands.import_scores)
app.command("train")(commands.train)
app.command("index")(commands.index)
app.command("datasets")(commands.datasets)
app.add_typer(evaluate.app, name="eval")


def main() -> None:
    app()
