"""BM25 + all-MiniLM-L6-v2 as an ensemble teacher over the dense recipe's SciFact train candidates.

1. BM25 scores (rkd's ``lucene-bm25`` index: pyserini, k1 0.9, b 0.4) for every candidate pair of
   ``runs/scifact-dense/mine``, into a score store (a pair BM25 does not retrieve scores 0);
2. per normalisation, the members alone, equal weights and weights tuned on SciFact *train* qrels
   (``retrieval_kd.scores.ensemble.tune``), as nDCG@10 of re-ranking the candidates.

Needs the dense recipe's run (``rkd run configs/scifact-dense-distill.toml --out runs/scifact-dense``)
and the ``lucene`` extra. Run::

    python benchmarks/ensemble_bm25_minilm.py --out /tmp/ensemble-bench
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from retrieval_kd.data import load_dataset
from retrieval_kd.data.candidates import Candidates
from retrieval_kd.indexes.lucene_bm25 import LuceneBM25Index
from retrieval_kd.scores.ensemble import open_store, tune
from retrieval_kd.scores.store import ScoreStore


def bm25_store(run: Path, out: Path) -> Path:
    if out.exists():
        return out
    started = time.time()
    ds = load_dataset("beir/scifact/train")
    texts = ds.doc_texts()
    ids = list(texts)
    index = LuceneBM25Index()
    index.add(ids, [texts[d] for d in ids])
    cands = Candidates.load(run / "mine")
    qids = [c.query_id for c in cands.items]
    retrieved = index.search(qids, [ds.queries[q] for q in qids], k=len(ids))
    pairs = cands.pairs()
    scores = np.array([retrieved.get(q, {}).get(d, 0.0) for q, d in pairs], dtype=np.float32)
    spec = {"kind": "bm25", "k1": 0.9, "b": 0.4, "engine": "lucene (pyserini)"}
    with ScoreStore.open(out, "bm25-lucene-k0.9-b0.4", spec) as store:
        store.add(list(pairs), scores)
    hits = int((scores != 0).sum())
    print(f"BM25: {len(pairs)} pairs, {hits} retrieved by BM25, {time.time() - started:.0f} s")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=Path("runs/scifact-dense"))
    p.add_argument("--out", type=Path, default=Path("/tmp/ensemble-bench"))
    p.add_argument("--step", type=float, default=0.05)
    args = p.parse_args()
    qrels = load_dataset("beir/scifact/train").qrels
    minilm = open_store(next(f for f in (args.run / "scores").iterdir() if f.is_dir()))
    bm25 = open_store(bm25_store(args.run, args.out / "bm25"))
    print("| normalisation | MiniLM alone | BM25 alone | equal weights | tuned (weights MiniLM, BM25) |")
    print("|---|---:|---:|---:|---|")
    for norm in ("zscore", "minmax", "rank", "none"):
        view = tune([minilm, bm25], "beir/scifact/train", norm, step=args.step, qrels=qrels)
        grid = dict(view.tuning.grid)
        best, score = view.tuning.grid[0]
        print(
            f"| {norm} | {grid[(1.0, 0.0)]:.4f} | {grid[(0.0, 1.0)]:.4f} | {grid[(0.5, 0.5)]:.4f} "
            f"| {score:.4f} {tuple(best)} |"
        )


if __name__ == "__main__":
    main()
