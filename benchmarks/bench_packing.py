"""Packed against padded query batches on the CPU (``retrieval_kd.students.packing``): the
micro-batches ``rkd serve`` forms at several clients, encoded by a saved student.

Batches of ``--sizes`` queries are drawn at random (seeded) from a dataset's queries (default
SciFact test: mean 23 tokens, longest 64). Every batch is encoded twice in a row, padded then
packed, in one process at ``--threads`` torch threads, so the two see the same machine; rows
give each path's p50 and p99 milliseconds per batch and the ratio of the padded p50 to the packed
p50, with the batch's padding share (1 − Σ lengths / (B × longest)) and the largest difference
between the two paths' vectors.

Run::

    python benchmarks/bench_packing.py --student runs/scifact-dense/student --threads 2
    python benchmarks/bench_packing.py --student PATH --dataset tests/data/tiny_beir --batches 5   # smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.table import Table


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", required=True, help="a saved rkd student or a dense model")
    p.add_argument("--dataset", default="beir/scifact/test")
    p.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 7, 8, 16])
    p.add_argument("--batches", type=int, default=200, help="random batches per size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    from retrieval_kd.cli._common import print_table
    from retrieval_kd.data import load_dataset
    from retrieval_kd.students import load_student, packing

    torch.set_num_threads(args.threads)
    student = load_student(args.student, device="cpu")  # a plain model folder or hub id opens as dense
    texts = list(load_dataset(args.dataset).queries.values())
    rng = np.random.default_rng(args.seed)
    gain = packing.PACK_GAIN

    def timed(batch: list[str], packed: bool) -> tuple[float, np.ndarray]:
        packing.PACK_GAIN = gain if packed else 0.0
        began = time.perf_counter()
        out = student.encode_queries(batch, batch_size=len(batch))
        return time.perf_counter() - began, np.asarray(out.toarray() if hasattr(out, "toarray") else out)

    timed(texts[:8], True)  # warm-up, and packing's one check against the padded outputs
    table = Table(title=f"packed vs padded query batches, {args.student}, {args.threads} threads")
    for column in ("batch", "padding", "padded p50 ms", "padded p99 ms", "packed p50 ms", "packed p99 ms"):
        table.add_column(column, justify="right")
    table.add_column("padded / packed (p50)", justify="right")
    table.add_column("max |Δ|", justify="right")
    tokenizer = student.model.tokenizer
    for size in args.sizes:
        padded, packed, waste, delta = [], [], [], 0.0
        for _ in range(args.batches):
            batch = [texts[i] for i in rng.choice(len(texts), size, replace=False)]
            lengths = [len(x) for x in tokenizer(batch, truncation=True)["input_ids"]]
            waste.append(1 - sum(lengths) / (size * max(lengths)))
            t_pad, v_pad = timed(batch, False)
            t_pack, v_pack = timed(batch, True)
            padded.append(t_pad)
            packed.append(t_pack)
            delta = max(delta, float(np.abs(v_pad - v_pack).max()))
        p = {"pad": np.percentile(np.array(padded) * 1e3, [50, 99])}
        p["pack"] = np.percentile(np.array(packed) * 1e3, [50, 99])
        table.add_row(
            str(size),
            f"{np.mean(waste):.0%}",
            f"{p['pad'][0]:.1f}",
            f"{p['pad'][1]:.1f}",
            f"{p['pack'][0]:.1f}",
            f"{p['pack'][1]:.1f}",
            f"{p['pad'][0] / p['pack'][0]:.2f}×",
            f"{delta:.1e}",
        )
    packing.PACK_GAIN = gain
    print_table(table)


if __name__ == "__main__":
    main()
