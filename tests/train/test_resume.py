"""`rkd train` killed with SIGKILL mid-training and started again resumes from its last
checkpoint and ends with the same weights as an uninterrupted run (CPU, tolerance 1e-6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file


def rkd_train(config: Path, cands: Path, store: Path, out: Path) -> subprocess.Popen[str]:
    args = ["train", str(config), "--candidates", str(cands), "--scores", str(store), "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-m", "retrieval_kd", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def test_sigkill_mid_training_resumes_to_equal_weights(
    tiny_model: Path,
    tmp_path: Path,
    overlap_scored: Callable[[Path, int], Any],
    train_recipe: Callable[..., Path],
) -> None:
    overlap_scored(tmp_path, 4)
    # 8 groups × 20 epochs / batch 2 = 80 steps, a checkpoint every 10
    config = train_recipe(
        tmp_path / "r.toml",
        loss="kl",
        negatives=4,
        epochs=20,
        batch_size=2,
        lr=1e-3,
        warmup=0.1,
        save_steps=10,
    )

    killed = tmp_path / "killed"
    proc = rkd_train(config, tmp_path / "cands", tmp_path / "store", killed)
    checkpoints = tmp_path / "killed.checkpoints"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (checkpoints / "checkpoint-20").is_dir():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not killed.exists()  # the student appears only when complete
    resumed = rkd_train(config, tmp_path / "cands", tmp_path / "store", killed)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "80 steps" in out
    assert not checkpoints.exists()  # cleaned once the student is saved

    full = rkd_train(config, tmp_path / "cands", tmp_path / "store", tmp_path / "full")
    out, err = full.communicate(timeout=600)
    assert full.returncode == 0, err
    a = load_file(str(killed / "model.safetensors"))
    b = load_file(str(tmp_path / "full" / "model.safetensors"))
    assert a.keys() == b.keys()
    start = load_file(str(tiny_model / "model.safetensors"))
    moved = max(float(np.abs(a[k] - start[k]).max()) for k in a)
    assert moved > 1e-3  # training changed the weights...
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-6  # ...and resuming changed nothing
    log_a = (killed / "train_log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()
    assert len(log_a) == len(log_b) == 80
