"""The same recipe run twice, in two fresh processes, gives the same report bit for bit
(issue 7 point 6): seeds, thread counts and deterministic kernels are fixed by rkd, not by luck."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from retrieval_kd.io import read_json_object


def run_recipe(recipe: Path, out: Path, threads: str | None = None) -> dict[str, object]:
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["RKD_NUM_THREADS"] = threads
    done = subprocess.run(
        [sys.executable, "-m", "retrieval_kd", "run", str(recipe), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return read_json_object(out / "report.json")


def train_losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "student" / "train_log.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def test_recipe_twice_gives_identical_reports(tiny_recipe: Path, tmp_path: Path) -> None:
    first = run_recipe(tiny_recipe, tmp_path / "a")
    second = run_recipe(tiny_recipe, tmp_path / "b")
    assert first["metrics"] == second["metrics"]
    assert first["fingerprints"] == second["fingerprints"]  # same store, same student weights
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")
    assert len(train_losses(tmp_path / "a")) > 0
