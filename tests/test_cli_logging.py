"""Library log lines: WARNING and up reach stderr; INFO only with ``rkd -v``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from retrieval_kd.cli import app

runner = CliRunner()


def _log_lines() -> None:
    """What libraries do: ir_datasets gives its loggers their own handler, no propagation and
    level INFO on first use; other libraries log through the root logger."""
    own = logging.getLogger("ir_datasets.rkd_test")
    own.handlers = [logging.StreamHandler(sys.stderr)]
    own.handlers[0].setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    own.propagate = False
    own.setLevel(logging.INFO)
    own.info("[finished] 0%| | 0/5183")
    own.warning("a warning from the own-handler logger")
    logging.getLogger("ir_datasets").info("an info line")
    logging.getLogger("ir_datasets").warning("a warning")
    logging.getLogger("sentence_transformers.x").info("another info line")


@pytest.fixture
def log_command() -> Iterator[str]:
    # an earlier test that read a dataset left ir_datasets' real logger with its own handler:
    # start from a pristine one, put it back afterwards
    irds = logging.getLogger("ir_datasets")
    saved = (irds.handlers, irds.propagate, irds.level)
    irds.handlers, irds.propagate, irds.level = [], True, logging.NOTSET
    app.command("log-test", hidden=True)(_log_lines)
    try:
        yield "log-test"
    finally:
        app.registered_commands.pop()
        logging.getLogger("ir_datasets.rkd_test").handlers = []
        irds.handlers, irds.propagate, irds.level = saved


def test_info_hidden_by_default(log_command: str) -> None:
    result = runner.invoke(app, [log_command])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "[WARNING] a warning from the own-handler logger",
        "WARNING ir_datasets: a warning",
    ]


def test_verbose_shows_info(log_command: str) -> None:
    for flag in ("-v", "--verbose"):
        result = runner.invoke(app, [flag, log_command])
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines() == [
            "[INFO] [finished] 0%| | 0/5183",
            "[WARNING] a warning from the own-handler logger",
            "INFO ir_datasets: an info line",
            "WARNING ir_datasets: a warning",
            "INFO sentence_transformers.x: another info line",
        ]


def test_logging_is_restored_after_the_command(log_command: str) -> None:
    root = logging.getLogger()
    before = (root.level, logging.root.manager.disable, list(root.handlers))
    runner.invoke(app, [log_command])
    runner.invoke(app, ["-v", log_command])
    assert (root.level, logging.root.manager.disable, list(root.handlers)) == before
