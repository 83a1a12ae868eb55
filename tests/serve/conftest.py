"""Served indexes for the server tests: tiny dense students over the tiny fixture, built once per
session through the real index stage (so their manifests record encoder, dataset and corpus as
`rkd index` writes them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrieval_kd.stages import IndexStage, index_stage
from retrieval_kd.students.dense import DenseStudent


@pytest.fixture(scope="session")
def served_dirs(
    tmp_path_factory: pytest.TempPathFactory, _tiny_model_master: Path, tiny_beir: Path
) -> dict[str, Path]:
    """Two faiss indexes of the tiny test corpus, as a teacher's and a student's would be: ``big``
    (the session's 2-layer tiny BERT) and ``small`` (one layer of another seed's, so the two
    rankings share some documents and not others)."""
    from retrieval_kd.testing import tiny_bert_folder

    root = tmp_path_factory.mktemp("served")
    texts = [
        json.loads(line)[field]
        for name, field in (("corpus.jsonl", "text"), ("queries.jsonl", "text"), ("corpus.jsonl", "title"))
        for line in (tiny_beir / name).read_text().splitlines()
    ]
    other = tiny_bert_folder(root / "seed1", texts, seed=1)
    out = {}
    for name, model, layers in (("big", _tiny_model_master, None), ("small", other, 1)):
        student = DenseStudent.from_pretrained(str(model), num_layers=layers, device="cpu")
        student.save(root / f"{name}-student")
        index_stage(IndexStage(str(root / f"{name}-student"), f"{tiny_beir}:test", root / name))
        out[name] = root / name
    return out


def free_server(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """``rkd serve ARGS --port 0`` in a subprocess; returns it and its base URL once /health is
    ready (the port is read from its "at http://..." line)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrieval_kd", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 300  # a loaded CI machine starts torch slowly
    url = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        proc.kill()
        raise AssertionError("rkd serve did not start:\n" + "".join(lines) + (proc.stdout.read() or ""))
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("rkd serve never became ready")


def stop(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C, as a user stops it; the exit status."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def start_server() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """:func:`free_server`, with every server it started stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
        proc, url = free_server(args, env)
        started.append(proc)
        return proc, url

    yield start
    for proc in started:
        if proc.poll() is None:
            stop(proc)


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text ``text`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if got == labels:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="session")
def read_metric() -> Callable[..., float]:
    """:func:`metric`, for the test modules (conftest is not importable)."""
    return metric


@pytest.fixture(scope="session")
def live_server(served_dirs: dict[str, Path]) -> Iterator[str]:
    """``rkd serve`` over both tiny indexes, as a user starts it; its base URL."""
    proc, url = free_server(
        ["--index", f"big={served_dirs['big']}", "--index", f"small={served_dirs['small']}"]
    )
    yield url
    stop(proc)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
