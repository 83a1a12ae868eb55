"""One sharding mechanism: `torchrun --nproc-per-node 2 -m retrieval_kd score-teacher` gives
each rank its own store writer, and the merged store equals a one-process store pair for pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from retrieval_kd.cli import app
from retrieval_kd.scores.store import ScoreStore

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def test_torchrun_two_processes_equal_one(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    train_ds = f"{tiny_beir}:train"
    mined = CliRunner().invoke(
        app,
        ["mine", "-d", train_ds, "-m", str(tiny_model), "--negatives", "6", "--out", str(tmp_path / "cands")],
        catch_exceptions=False,
    )
    assert mined.exit_code == 0, mined.output
    args = ["score-teacher", "--candidates", str(tmp_path / "cands"), "--dataset", train_ds]
    args += ["--model", str(tiny_model), "--teacher", "bi-encoder", "--part-size", "4", "--batch-size", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    # torchrun gives each rank one thread; the one-process run gets the same, so the two sum in
    # the same order and agree bit for bit (with 2 threads they differ in the last float bits)
    env["OMP_NUM_THREADS"] = "1"
    two = subprocess.run(
        [*TORCHRUN, "-m", "retrieval_kd", *args, "--store", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr
    assert "(shard 0/2)" in two.stdout and "(shard 1/2)" in two.stdout
    one = subprocess.run(
        [sys.executable, "-m", "retrieval_kd", *args, "--store", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr
    merged, single = ScoreStore.load(tmp_path / "two"), ScoreStore.load(tmp_path / "one")
    assert len(merged) == len(single) == 56  # 8 queries × (1 positive + 6 negatives)
    a, b = merged.to_table(), single.to_table()
    assert a.column("query_id").equals(b.column("query_id")) and a.column("doc_id").equals(b.column("doc_id"))
    assert a.equals(b), max(
        abs(x - y) for x, y in zip(a["score"].to_pylist(), b["score"].to_pylist(), strict=True)
    )
    writers = sorted(p.name for p in merged.path.iterdir() if p.name.startswith("part-"))
    assert {w.split("-")[1] for w in writers} == {"shard0of2", "shard1of2"}


def test_torchrun_recipe_scores_shards_and_trains(tiny_beir: Path, tiny_model: Path, tmp_path: Path) -> None:
    """`rkd run --nproc 2` (torchrun underneath): rank 0 mines, each rank scores its shard, both
    train (DDP, gloo), rank 0 saves, indexes and evaluates; the store equals one process scoring
    everything."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f"""
[data]
train = "{tiny_beir}:train"
eval = "{tiny_beir}:test"
[teacher]
kind = "bi-encoder"
model = "{tiny_model}"
batch_size = 1
[mine]
negatives = 6
[student]
model = "{tiny_model}"
num_layers = 1
[train]
negatives = 3
batch_size = 2
[eval]
metrics = ["ndcg@10"]
k = 10
"""
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "retrieval_kd",
            "run",
            str(recipe),
            "--out",
            str(tmp_path / "run"),
            "--nproc",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr
    assert two.stderr.count("train: 2 steps") == 1  # 8 groups / (2 ranks × 2): said once, by rank 0
    args = ["score-teacher", "--candidates", str(tmp_path / "run" / "mine"), "-d", f"{tiny_beir}:train"]
    args += [
        "-m",
        str(tiny_model),
        "--teacher",
        "bi-encoder",
        "--batch-size",
        "1",
        "--store",
        str(tmp_path / "one"),
    ]
    one = subprocess.run(
        [sys.executable, "-m", "retrieval_kd", *args], capture_output=True, text=True, env=env
    )
    assert one.returncode == 0, one.stderr
    merged, single = ScoreStore.load(tmp_path / "run" / "scores"), ScoreStore.load(tmp_path / "one")
    assert len(merged) == 56 and merged.to_table().equals(single.to_table())
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(report["metrics"]) == {"teacher", "student_before", "student_after"}
