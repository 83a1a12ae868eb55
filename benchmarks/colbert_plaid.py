"""The PLAID-style compressed index against exact MaxSim on one set of ColBERT token vectors: its
recall of the exact top-k, its memory against fp16 token vectors, and its speed, on the corpus
and on grown copies of it.

The vectors are an untrained ColBERT student's (``rkd`` ColbertStudent from all-MiniLM-L6-v2,
default cut to 2 layers, ColBERTv2 defaults otherwise: 128 dims, 32-token augmented queries,
180-token documents) over a dataset's corpus and queries (default SciFact test: 5,183 docs, 300
queries). Every row is an rkd index searched through its ``Index.search`` in one process, on
``--threads`` threads; the baseline is the exact ``maxsim`` index (float16 storage, float32
scoring).

Growth: a corpus ``f`` times the size is the real corpus (its first ``f·N`` documents when
``f < 1``) plus ``f - 1`` copies of it whose every token vector gets Gaussian noise of standard
deviation ``--noise`` per dimension and is renormalised (new ids; the copies sit near, not on,
their originals, so they compete for the top-k like near-duplicates do). Each size is
searched by the same queries; the full-size point is the main table's (exact and PLAID at
``--growth-nbits``).

Run::

    python benchmarks/colbert_plaid.py --vectors /tmp/bench/colbert-scifact   # encode once, reuse
    python benchmarks/colbert_plaid.py --student runs/scifact-colbert/student --vectors DIR  # trained
    python benchmarks/colbert_plaid.py --index runs/scifact-colbert/index/student_after  # its docs
    python benchmarks/colbert_plaid.py --index DIR --dataset 'beir/scifact/train#dev:0.2' \
        --codecs pq scalar --ndocs 256 512 1024 --sizes    # choose settings on the dev carve
    python benchmarks/colbert_plaid.py --dataset tests/data/tiny_beir --sizes 1 --model PATH  # smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from retrieval_kd.types import Run


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="beir/scifact/test")
    p.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument(
        "--student", type=Path, help="a saved ColBERT student (a recipe's student folder) instead of --model"
    )
    p.add_argument(
        "--index",
        type=Path,
        help="an exact `maxsim` index folder (a recipe's index/student_after): its document vectors "
        "are used as they are, and only the queries are encoded, by the student it names",
    )
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    p.add_argument("--sizes", type=float, nargs="*", default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--nbits", type=int, nargs="*", default=[2, 4])
    p.add_argument("--codecs", nargs="*", default=["pq"], help="residual codecs of the main table")
    p.add_argument(
        "--nlist",
        type=int,
        nargs="*",
        help="centroid counts of the main table, each its own index (default: the index's own)",
    )
    p.add_argument(
        "--ndocs",
        type=int,
        nargs="*",
        help="search settings of the main table: each index is built once and searched at each "
        "ndocs (default: the index's own)",
    )
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument(
        "--growth-nbits", type=int, help="the PLAID index of the growth curve (default: the index's own)"
    )
    p.add_argument("--vectors", type=Path, help="a folder keeping the encoded vectors between runs")
    p.add_argument("--plot", type=Path, default=Path("/tmp/bench/colbert-plaid.png"))
    p.add_argument("--markdown", type=Path, default=Path("/tmp/bench/colbert-plaid-tables.md"))
    return p.parse_args()


def encoded(args: argparse.Namespace, console: Console) -> tuple[list[str], Any, list[str], Any]:
    """``(doc ids, docs, query ids, queries)`` as TokenVectors, encoded by the student or read
    back from ``--vectors`` when it holds this dataset encoded by this exact student."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.students.colbert import ColbertStudent
    from retrieval_kd.students.maxsim import TokenVectors

    if args.index is not None:
        return from_index(args, console)
    student = (
        ColbertStudent.load(args.student, device="cpu")
        if args.student is not None
        else ColbertStudent.from_pretrained(args.model, num_layers=args.num_layers)
    )
    key = {"dataset": args.dataset, "student": student.fingerprint()}
    folder = args.vectors
    if (
        folder is not None
        and (folder / "key.json").is_file()
        and json.loads((folder / "key.json").read_text()) == key
    ):
        ids = json.loads((folder / "ids.json").read_text())
        with np.load(folder / "vectors.npz") as z:
            docs = TokenVectors(z["docs"], z["doc_lengths"])
            queries = TokenVectors(z["queries"], z["query_lengths"])
        return ids["docs"], docs, ids["queries"], queries
    dataset = load_dataset(args.dataset)
    doc_ids, qids = list(dataset.docs), list(dataset.queries)
    t0 = time.perf_counter()
    docs = student.encode_documents([dataset.docs[d].full_text() for d in doc_ids])
    console.print(f"encoded {len(doc_ids)} docs in {time.perf_counter() - t0:.0f} s")
    queries = student.encode_queries([dataset.queries[q] for q in qids])
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / "vectors.npz",
            docs=docs.vectors,
            doc_lengths=docs.lengths,
            queries=queries.vectors,
            query_lengths=queries.lengths,
        )
        (folder / "ids.json").write_text(json.dumps({"docs": doc_ids, "queries": qids}))
        (folder / "key.json").write_text(json.dumps(key))
    return doc_ids, docs, qids, queries


def from_index(args: argparse.Namespace, console: Console) -> tuple[list[str], Any, list[str], Any]:
    """The documents of an exact ``maxsim`` index as it stored them (float16, read back as
    float32), and ``--dataset``'s queries encoded by the student that built it: encoding SciFact's
    corpus with a ColBERT student takes minutes here, and the index already holds it."""
    from retrieval_kd.data import load_dataset
    from retrieval_kd.indexes.maxsim_index import MaxSimIndex
    from retrieval_kd.indexing import corpus_fingerprint
    from retrieval_kd.students.colbert import ColbertStudent
    from retrieval_kd.students.maxsim import TokenVectors

    index = MaxSimIndex.load(args.index)  # checks the folder's files and its kind
    dataset = load_dataset(args.dataset)
    if index.manifest["corpus"] != corpus_fingerprint(dataset):
        raise SystemExit(f"{args.index}: indexes another corpus than {args.dataset}'s")
    student = ColbertStudent.load(args.student or Path(index.manifest["student_path"]), device="cpu")
    index.check_encoder(student.fingerprint())
    vectors, lengths = index.arrays()
    docs = TokenVectors(vectors.astype(np.float32), lengths.astype(np.int64))
    qids = list(dataset.queries)
    queries = student.encode_queries([dataset.queries[q] for q in qids])
    console.print(f"{args.index}: {len(index)} docs read; {len(qids)} queries encoded")
    return index.doc_ids, docs, qids, queries


def grown(doc_ids: list[str], docs: Any, factor: float, noise: float) -> tuple[list[str], Any]:
    """The corpus at ``factor`` times its size (see the module docstring)."""
    from retrieval_kd.students.maxsim import TokenVectors

    if factor <= 1:
        n = max(1, int(len(doc_ids) * factor))
        return doc_ids[:n], TokenVectors(docs.vectors[: int(docs.lengths[:n].sum())], docs.lengths[:n])
    rng = np.random.default_rng(0)
    ids, parts, lengths = list(doc_ids), [docs.vectors], [docs.lengths]
    for copy in range(1, int(np.ceil(factor))):
        x = docs.vectors.astype(np.float32) + rng.normal(0, noise, docs.vectors.shape).astype(np.float32)
        parts.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        lengths.append(docs.lengths)
        ids += [f"{d}~{copy}" for d in doc_ids]
    return ids, TokenVectors(np.concatenate(parts).astype(np.float32), np.concatenate(lengths))


def recall(run: Run, reference: Run, k: int) -> float:
    """Mean share of each query's exact top-k that ``run`` returns."""
    return float(
        np.mean(
            [
                len(set(list(run[q])[:k]) & set(list(ref)[:k])) / len(list(ref)[:k])
                for q, ref in reference.items()
            ]
        )
    )


def measure(
    kind: str, options: dict[str, Any], ids: list[str], docs: Any, qids: list[str], queries: Any, k: int
) -> dict[str, Any]:
    """Build (add + first search) seconds, search seconds over all queries, the run, the index."""
    from retrieval_kd.indexes import INDEXES

    index: Any = INDEXES.get(kind).create("", options)
    t0 = time.perf_counter()
    index.add(ids, docs)
    index.search(qids[:1], queries_slice(queries, 1), k)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = index.search(qids, queries, k)
    return {"build": build, "search": time.perf_counter() - t0, "run": run, "index": index}


def research(row: dict[str, Any], ndocs: int, qids: list[str], queries: Any, k: int) -> None:
    """``row``'s PLAID index searched again at ``ndocs`` (its run and search seconds replaced),
    unless it was last searched there."""
    index = row["index"]
    if index.search_options["ndocs"] != ndocs:
        index.search_options["ndocs"] = ndocs
        t0 = time.perf_counter()
        row["run"] = index.search(qids, queries, k)
        row["search"] = time.perf_counter() - t0


def queries_slice(queries: Any, n: int) -> Any:
    from retrieval_kd.students.maxsim import TokenVectors

    return TokenVectors(queries.vectors[: int(queries.lengths[:n].sum())], queries.lengths[:n])


def main() -> None:
    import torch

    args = parse_args()
    from retrieval_kd.indexes.plaid_index import BUILD, SEARCH

    if args.growth_nbits is None:
        args.growth_nbits = int(BUILD["nbits"])
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    console = Console(width=150)
    doc_ids, docs, qids, queries = encoded(args, console)
    console.print(
        f"{args.dataset}: {len(doc_ids)} docs, {len(docs.vectors):,} token vectors "
        f"({docs.lengths.mean():.0f} per doc), dim {docs.dim}; {len(qids)} queries; k={args.k}; "
        f"{args.threads} thread(s)"
    )
    exact = measure("maxsim", {"device": "cpu"}, doc_ids, docs, qids, queries, args.k)
    table = Table(title=f"PLAID vs exact MaxSim, {args.dataset}, top-{args.k}")
    for col in (
        "index",
        "build s",
        "QPS",
        "speed-up",
        f"recall of exact top-{args.k}",
        "memory / fp16",
        "residual + id / fp16",
    ):
        table.add_column(col, justify="left" if col == "index" else "right")
    fp16 = len(docs.vectors) * docs.dim * 2
    table.add_row(
        "maxsim (exact, fp16)",
        f"{exact['build']:.1f}",
        f"{len(qids) / exact['search']:.1f}",
        "1.00×",
        "1.0000",
        "1.000",
        "–",
    )
    lines = [
        "| index | build s | QPS | speed-up | recall of exact top-10 | memory / fp16 "
        "| residual + id / fp16 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    exact_qps = len(qids) / exact["search"]
    lines.append(
        f"| maxsim (exact, fp16) | {exact['build']:.1f} | {exact_qps:.1f} | 1.00× | 1.0000 | 1.000 | – |"
    )
    main_rows = {}
    for nbits, codec, nlist in itertools.product(args.nbits, args.codecs, args.nlist or [None]):
        row = measure(
            "plaid",
            {"nbits": nbits, "codec": codec, "nlist": nlist, "device": "cpu"},
            doc_ids,
            docs,
            qids,
            queries,
            args.k,
        )
        defaults = codec == BUILD["codec"] and nlist is None  # the growth curve's full-size point
        if defaults:
            main_rows[nbits] = row
        mem = row["index"].memory()
        build = row["index"].manifest["build"]
        for ndocs in args.ndocs or [SEARCH["ndocs"]]:
            research(row, ndocs, qids, queries, args.k)  # the same index, searched wider
            cells = (
                f"plaid {nbits}-bit {build['codec']}, nlist {build['nlist']}, ndocs {ndocs}",
                f"{row['build']:.1f}",
                f"{len(qids) / row['search']:.1f}",
                f"{exact['search'] / row['search']:.2f}×",
                f"{recall(row['run'], exact['run'], args.k):.4f}",
                f"{mem['total'] / fp16:.3f}",
                f"{(mem['residuals'] + mem['codes']) / fp16:.3f}",
            )
            table.add_row(*cells)
            lines.append("| " + " | ".join(cells) + " |")
        if defaults:
            research(row, int(SEARCH["ndocs"]), qids, queries, args.k)
    console.print(table)

    growth = Table(title=f"Speed-up with corpus size (plaid {args.growth_nbits}-bit defaults)")
    for col in ("docs", "token vectors", "exact QPS", "plaid QPS", "speed-up", "recall", "plaid build s"):
        growth.add_column(col, justify="right")
    glines = [
        "| docs | token vectors | exact QPS | plaid QPS | speed-up | recall of exact top-10 "
        "| plaid build s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    points = []
    gq_ids, gq = qids, queries
    for factor in args.sizes:
        ids, tv = grown(doc_ids, docs, factor, args.noise)
        if factor == 1 and args.growth_nbits in main_rows:
            ex, pl = exact, main_rows[args.growth_nbits]
        else:
            ex = measure("maxsim", {"device": "cpu"}, ids, tv, gq_ids, gq, args.k)
            pl = measure("plaid", {"nbits": args.growth_nbits, "device": "cpu"}, ids, tv, gq_ids, gq, args.k)
        ex.pop("index", None)
        pl.pop("index", None)
        cells = (
            f"{len(ids):,}",
            f"{len(tv.vectors):,}",
            f"{len(gq_ids) / ex['search']:.1f}",
            f"{len(gq_ids) / pl['search']:.1f}",
            f"{ex['search'] / pl['search']:.2f}×",
            f"{recall(pl['run'], ex['run'], args.k):.4f}",
            f"{pl['build']:.1f}",
        )
        growth.add_row(*cells)
        glines.append("| " + " | ".join(cells) + " |")
        points.append((len(tv.vectors), len(gq_ids) / ex["search"], len(gq_ids) / pl["search"]))
        console.print(growth)
    if points:
        plot(points, args.plot, args.growth_nbits)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text("\n".join(lines) + "\n\n" + "\n".join(glines) + "\n")
    console.print(f"plot → {args.plot}, tables → {args.markdown}")


def plot(points: list[tuple[int, float, float]], path: Path, nbits: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens, exact, plaid = (np.array(c) for c in zip(*points, strict=True))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(tokens, exact, "o-", label="exact MaxSim (fp16)")
    a.loglog(tokens, plaid, "s-", label=f"PLAID {nbits}-bit (defaults)")
    a.set(xlabel="token vectors in the corpus", ylabel="queries per second", title="Throughput")
    a.legend()
    b.semilogx(tokens, plaid / exact, "s-", color="C1")
    b.axhline(1.0, color="grey", lw=0.8)
    b.set(xlabel="token vectors in the corpus", ylabel="speed-up over exact", title="PLAID / exact")
    labels = [f"{t / 1e6:.2f}M" if t >= 1e6 else f"{t / 1e3:.0f}k" for t in tokens]
    for ax in (a, b):  # the measured sizes as ticks, not overlapping powers of ten
        ax.set_xticks(tokens, labels)
        ax.minorticks_off()
    a.set_yticks([1, 2, 5, 10, 20], ["1", "2", "5", "10", "20"])
    a.set_ylim(min(exact.min(), plaid.min()) * 0.8, max(exact.max(), plaid.max()) * 1.25)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
