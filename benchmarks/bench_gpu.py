"""GPU figures of issue 13 (teacher scoring, dense encoding) and issue 9 (fast-plaid), one run.

The device machine has torch, sentence-transformers and pyarrow but no ir_datasets, so the texts
travel as a pack made here first (``--make-pack``): the SciFact corpus, the test queries, and
the 21k (query, doc) pairs of the dense recipe's mined candidates with their train queries.

Sections, each a ratio against a baseline measured in the same process:

1. **bf16 matmul rate**: an 8192³ bf16 product (3 warm-ups, mean of 10), the denominator of
   every "share of the GPU" figure.
2. **Teacher scoring** of every pair at max_length 512 with a trained MiniLM-L6 cross-encoder:
   plain ``CrossEncoder.predict`` (fp32, batch 32) against rkd's ``score_pairs`` into a
   ``ScoreStore`` (tokenize-once assembly, token-budget batches, the next part prepared in a
   thread) in fp32 and with bf16 weights. FLOPs per pair = 2 × non-embedding parameters × tokens
   + 4 × layers × tokens² × hidden (QKᵀ and AV), over the pairs' real (unpadded) tokens.
3. **Dense encoding** of the corpus: plain ``encode_document`` (fp32, batch 32) against rkd's
   ``DenseStudent.encode_documents``, and sentence-transformers with bf16 weights at batch 256.
4. **Corpus encoding of the other families** (``--colbert``, ``--splade``): plain
   ``encode_document`` against rkd's ``encode_documents`` in fp32 and with ``--dtype bfloat16``.
5. **ColBERT**: the distilled student's token vectors of the corpus in exact MaxSim (rkd's
   ``maxsim`` index, on the GPU) and in fast-plaid (``fast-plaid`` index kind, on the GPU):
   recall of the exact top 10, bytes against float16 vectors, queries per second, at the
   corpus' size and grown copies of it (benchmarks/colbert_plaid.py's ``grown``).

Run (the device machine; models as rkd folders)::

    python benchmarks/bench_gpu.py --make-pack .dev/scifact.json.gz      # here, once
    python benchmarks/bench_gpu.py --pack .dev/scifact.json.gz --reranker R --dense D \\
        --colbert C --out $OUT/gpu.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--make-pack", type=Path, help="write the text pack here (needs ir_datasets) and stop")
    p.add_argument("--candidates", type=Path, default=Path("runs/scifact-dense/mine/candidates.jsonl"))
    p.add_argument("--pack", type=Path)
    p.add_argument("--reranker", type=Path, help="a cross-encoder folder with a trained head")
    p.add_argument("--dense", type=Path, help="a dense student folder")
    p.add_argument("--colbert", type=Path, help="a ColBERT student folder")
    p.add_argument("--splade", type=Path, help="a SPLADE student folder (corpus encoding rows)")
    p.add_argument("--out", type=Path, required=False)
    p.add_argument("--pairs", type=int, default=0, help="score only the first N pairs (0: all)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the rkd rows")
    p.add_argument("--docs", type=int, default=0, help="encode only the first N documents (0: all)")
    p.add_argument("--growth", default="1,2,4", help="ColBERT corpus sizes, as multiples")
    p.add_argument("--skip", default="", help="sections to skip: scoring,dense,encoding,colbert")
    p.add_argument("--device", default="cuda", help="cuda (cpu: a smoke run of the script itself)")
    return p.parse_args()


def make_pack(path: Path, candidates: Path) -> None:
    from retrieval_kd.data import load_dataset

    test = load_dataset("beir/scifact/test")
    train = load_dataset("beir/scifact/train")
    pairs = []
    for line in candidates.read_text().splitlines():
        row = json.loads(line)
        pairs += [[row["query_id"], d] for d in [*row["positives"], *row["negatives"]]]
    pack = {
        "docs": {d: test.docs[d].full_text() for d in sorted(test.docs)},
        "test_queries": {q: test.queries[q] for q in sorted(test.queries)},
        "train_queries": {q: train.queries[q] for q in sorted({q for q, _ in pairs})},
        "pairs": pairs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(pack, f)
    print(f"{path}: {len(pack['docs'])} docs, {len(pairs)} pairs, {path.stat().st_size:,} bytes")


DEVICE = "cuda"


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def matmul_tflops() -> float:
    import torch

    size = 8192 if DEVICE == "cuda" else 512
    a = torch.randn(size, size, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    return 2 * size**3 * 10 / (time.perf_counter() - t0) / 1e12


def timed(fn: Any, texts: list[str]) -> float:
    """Seconds of ``fn(texts)`` after a warm-up on the first 256 texts, the device synchronised."""
    fn(texts[:256])
    sync()
    t0 = time.perf_counter()
    fn(texts)
    sync()
    return time.perf_counter() - t0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def scoring(args: argparse.Namespace, pack: dict[str, Any], peak: float, tmp: Path) -> dict[str, Any]:
    import torch
    from sentence_transformers import CrossEncoder

    from retrieval_kd.scores.scoring import score_pairs
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.teachers import build_teacher
    from retrieval_kd.timing import Phases
    from retrieval_kd.types import Pair

    pairs = [Pair(q, d) for q, d in pack["pairs"]]
    if args.pairs:
        pairs = pairs[: args.pairs]
    queries, docs = pack["train_queries"], pack["docs"]
    texts = [(queries[q], docs[d]) for q, d in pairs]
    n = len(pairs)
    model = CrossEncoder(str(args.reranker), device=DEVICE, max_length=512, activation_fn=torch.nn.Identity())
    tok = model.tokenizer
    t0 = time.perf_counter()
    enc = tok([a for a, _ in texts], [b for _, b in texts], truncation="longest_first", max_length=512)
    tokenize_rate = n / (time.perf_counter() - t0)
    lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.float64)
    body = model.model  # the transformers *ForSequenceClassification
    cfg = body.config
    params = sum(p.numel() for name, p in body.named_parameters() if "embeddings" not in name)
    flops = float((2 * params * lengths + 4 * cfg.num_hidden_layers * lengths**2 * cfg.hidden_size).sum())

    rows: dict[str, dict[str, Any]] = {}

    def row(name: str, seconds: float, scores: np.ndarray, **extra: Any) -> None:
        rows[name] = {
            "seconds": round(seconds, 3),
            "pairs_per_s": round(n / seconds, 1),
            "share_of_bf16_peak": round(flops / seconds / 1e12 / peak, 4),
            **extra,
        }
        rows[name]["scores"] = scores

    model.predict(texts[:64], batch_size=32, show_progress_bar=False)  # warm-up
    sync()
    t0 = time.perf_counter()
    plain = model.predict(texts, batch_size=32, show_progress_bar=False, convert_to_numpy=True)
    sync()
    row("plain CrossEncoder.predict fp32 b32", time.perf_counter() - t0, np.asarray(plain, np.float32))
    del model
    torch.cuda.empty_cache()

    # dtype, token budget per batch (× 512), pairs per stored part, prepare ahead, width multiple
    variants = (
        ("float32", 32, 512, True, 1),
        ("bfloat16", 256, 4096, True, 1),
        ("bfloat16", 256, 4096, False, 1),
        ("bfloat16", 256, 4096, True, 8),
        ("bfloat16", 256, 1024, True, 1),
        ("bfloat16", 256, 16384, True, 1),
    )
    teachers = {}
    for dtype, batch, *_ in variants:
        if (dtype, batch) not in teachers:
            teachers[dtype, batch] = build_teacher(
                "cross-encoder",
                str(args.reranker),
                max_length=512,
                dtype=dtype,
                batch_size=batch,
                device=DEVICE,
            )
            teachers[dtype, batch].score(*zip(*texts[:64], strict=True))  # warm-up and the assembler's check
    sync()
    best: dict[str, float] = {}
    for round_no in range(args.rounds):  # interleaved rounds, best of each kept: a noisy host moves all alike
        for dtype, batch, part, ahead, multiple in variants:
            teacher = teachers[dtype, batch]
            teacher.prepare_ahead = ahead
            teacher.pad_to_multiple_of = multiple
            teacher._assembler._cache.clear()  # every round tokenizes from scratch
            root = tmp / f"store-{dtype}-{part}-{ahead}-{multiple}-{round_no}"
            phases = Phases()
            t0 = time.perf_counter()
            with ScoreStore.open(root, teacher.fingerprint(), teacher.spec()) as store:
                score_pairs(store, teacher, pairs, queries, docs, batch_size=part, phases=phases)
            seconds = time.perf_counter() - t0
            name = f"rkd score_pairs+store {dtype} budget {batch}x512 part {part}"
            name += " prepared ahead" * ahead + f" widths x{multiple}" * (multiple > 1)
            if seconds < best.get(name, float("inf")):
                best[name] = seconds
                scores = ScoreStore.load(root, teacher.fingerprint()).lookup(pairs)
                row(name, seconds, scores, phases={k: round(v, 3) for k, v in phases.seconds.items()})
    teacher = teachers["bfloat16", 256]
    # the ceiling of this forward path: every batch prepared first, only the GPU part timed; the
    # same with widths padded to multiples of 8, and with the body compiled (torch.compile,
    # dynamic shapes; its compile time is reported apart, the best of 3 passes after it)
    texts_q, texts_d = [queries[p.query_id] for p in pairs], [docs[p.doc_id] for p in pairs]
    for multiple, compiled in ((1, False), (8, False), (8, True)):
        teacher.pad_to_multiple_of = multiple
        started = time.perf_counter()
        prepared = teacher.prepare(texts_q, texts_d)
        prepare_s = time.perf_counter() - started
        extra: dict[str, Any] = {"prepare_seconds": round(prepare_s, 3)}
        if compiled:
            body = teacher.model.model  # the transformers model; its forward is what is compiled
            body.forward = torch.compile(body.forward, dynamic=True)
            sync()
            t0 = time.perf_counter()
            teacher.score_prepared(prepared)
            sync()
            extra["compile_and_first_pass_seconds"] = round(time.perf_counter() - t0, 2)
        best_s, forward = float("inf"), None
        for _ in range(3 if compiled else 1):
            sync()
            t0 = time.perf_counter()
            out = teacher.score_prepared(prepared)
            sync()
            if time.perf_counter() - t0 < best_s:
                best_s, forward = time.perf_counter() - t0, out
        label = "rkd forward passes only (prepared beforehand), bf16"
        label += f", widths x{multiple}" * (multiple > 1) + ", torch.compile" * compiled
        row(label, best_s, forward, **extra)
        if compiled:
            del body.forward  # the class's own forward again
    del teachers, teacher
    torch.cuda.empty_cache()
    base = rows["plain CrossEncoder.predict fp32 b32"]
    fp32 = rows["rkd score_pairs+store float32 budget 32x512 part 512 prepared ahead"]["scores"]
    bf16 = rows["rkd score_pairs+store bfloat16 budget 256x512 part 4096 prepared ahead"]["scores"]
    for r in rows.values():
        r["ratio_vs_plain"] = round(base["seconds"] / r["seconds"], 3)
        r["max_abs_diff_vs_plain"] = float(np.abs(r["scores"] - base["scores"]).max())
    for r in rows.values():
        del r["scores"]
    per_query: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        per_query.setdefault(p.query_id, []).append(i)
    rhos = np.array([spearman(fp32[ix], bf16[ix]) for ix in per_query.values() if len(ix) > 2])
    agreement = {
        "spearman_all_pairs": round(spearman(fp32, bf16), 5),
        "spearman_per_query_mean": round(float(np.nanmean(rhos)), 4),
        "spearman_per_query_min": round(float(np.nanmin(rhos)), 4),
    }
    return {
        "pairs": n,
        "tokens_per_pair_mean": round(float(lengths.mean()), 1),
        "non_embedding_params": int(params),
        "gflop_per_pair_mean": round(flops / n / 1e9, 3),
        "tokenizer_alone_pairs_per_s": round(tokenize_rate, 1),
        "rows": rows,
        "bf16_vs_fp32": agreement,
    }


def dense(args: argparse.Namespace, pack: dict[str, Any]) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from retrieval_kd.students import open_student

    texts = list(pack["docs"].values())[: args.docs or None]
    out: dict[str, Any] = {"docs": len(texts)}

    st = SentenceTransformer(str(args.dense), device=DEVICE)
    student = open_student(args.dense, device=DEVICE)
    rows = {
        "plain encode_document fp32 b32": lambda t: st.encode_document(
            t, batch_size=32, convert_to_numpy=True
        ),
        "rkd encode_documents fp32 b32 (budget 32 x max_seq_length)": lambda t: student.encode_documents(
            t, batch_size=32
        ),
        "rkd encode_documents fp32 b128": lambda t: student.encode_documents(t, batch_size=128),
    }
    seconds = {name: timed(fn, texts) for name, fn in rows.items()}
    reference = st.encode_document(texts, batch_size=32, convert_to_numpy=True)
    max_diff = float(np.abs(student.encode_documents(texts, batch_size=32) - reference).max())
    st.to(torch.bfloat16)
    half = open_student(
        args.dense, device=DEVICE, dtype="bfloat16"
    )  # what `rkd index --dtype bfloat16` opens
    seconds["plain encode_document bf16 weights b256"] = timed(
        lambda t: st.encode_document(t, batch_size=256, convert_to_numpy=True), texts
    )
    seconds["rkd encode_documents bf16 weights b128 (--dtype bfloat16)"] = timed(
        lambda t: half.encode_documents(t, batch_size=128), texts
    )
    bf16 = half.encode_documents(texts, batch_size=128)
    cosine = (bf16 * reference).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(reference, axis=1)
    out["rkd_bf16_min_cosine_vs_plain_fp32"] = round(float(cosine.min()), 5)
    base = seconds["plain encode_document fp32 b32"]
    for name, s in seconds.items():
        out[name] = {"seconds": round(s, 3), "docs_per_s": round(len(texts) / s, 1)}
    out["rkd_fp32_max_abs_diff_vs_plain"] = max_diff
    for r in out.values():
        if isinstance(r, dict):
            r["ratio_vs_plain"] = round(base / r["seconds"], 3)
    return out


def family_encoding(args: argparse.Namespace, pack: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A ColBERT or SPLADE student's corpus encoding: plain sentence-transformers
    ``encode_document`` (fp32, batch 32) against rkd's ``encode_documents`` (the token-budget
    path of every family) in fp32 and with ``--dtype bfloat16``."""
    from retrieval_kd.students import open_student

    texts = list(pack["docs"].values())[: args.docs or None]
    student = open_student(folder, device=DEVICE)
    half = open_student(folder, device=DEVICE, dtype="bfloat16")
    plain_kwargs = (
        {"convert_to_sparse_tensor": True} if student.kind == "splade" else {"convert_to_numpy": True}
    )

    seconds = {
        "plain encode_document fp32 b32": timed(
            lambda t: student.model.encode_document(t, batch_size=32, **plain_kwargs), texts
        ),
        "rkd encode_documents fp32 b32": timed(lambda t: student.encode_documents(t, batch_size=32), texts),
        "rkd encode_documents fp32 b128": timed(lambda t: student.encode_documents(t, batch_size=128), texts),
        "rkd encode_documents bf16 b128 (--dtype bfloat16)": timed(
            lambda t: half.encode_documents(t, batch_size=128), texts
        ),
    }
    base = seconds["plain encode_document fp32 b32"]
    out: dict[str, Any] = {"kind": student.kind, "docs": len(texts)}
    for name, s in seconds.items():
        out[name] = {
            "seconds": round(s, 3),
            "docs_per_s": round(len(texts) / s, 1),
            "ratio_vs_plain": round(base / s, 3),
        }
    return out


def colbert(args: argparse.Namespace, pack: dict[str, Any]) -> dict[str, Any]:
    from colbert_plaid import grown, measure, recall

    from retrieval_kd.students import open_student

    student = open_student(args.colbert, device=DEVICE)
    doc_ids = list(pack["docs"])[: args.docs or None]
    t0 = time.perf_counter()
    docs = student.encode_documents([pack["docs"][d] for d in doc_ids], batch_size=64)
    encode = time.perf_counter() - t0
    qids = list(pack["test_queries"])
    queries = student.encode_queries([pack["test_queries"][q] for q in qids], batch_size=64)
    out: dict[str, Any] = {"encode_seconds": round(encode, 2), "queries": len(qids), "sizes": []}
    for factor in [float(f) for f in args.growth.split(",")]:
        ids, tv = grown(doc_ids, docs, factor, 0.05)
        exact = measure("maxsim", {"device": DEVICE}, ids, tv, qids, queries, 10)
        fast = measure("fast-plaid", {"device": DEVICE}, ids, tv, qids, queries, 10)
        tokens, dim = len(tv.vectors), tv.dim
        size = {
            "factor": factor,
            "docs": len(ids),
            "tokens": tokens,
            "exact_search_s": round(exact["search"], 3),
            "exact_qps": round(len(qids) / exact["search"], 1),
            "fast_plaid_build_s": round(fast["build"], 2),
            "fast_plaid_search_s": round(fast["search"], 3),
            "fast_plaid_qps": round(len(qids) / fast["search"], 1),
            "speedup": round(exact["search"] / fast["search"], 3),
            "recall_at_10": round(recall(fast["run"], exact["run"], 10), 4),
            "bytes": int(fast["index"].manifest["bytes"]),
            "memory_vs_fp16": round(fast["index"].manifest["bytes"] / (tokens * dim * 2), 4),
        }
        print(json.dumps(size), flush=True)
        out["sizes"].append(size)
    return out


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.make_pack:
        make_pack(args.make_pack, args.candidates)
        return
    import torch

    global DEVICE
    DEVICE = args.device
    with gzip.open(args.pack, "rt") as f:
        pack = json.load(f)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    result["bf16_matmul_tflops"] = round(matmul_tflops(), 3)
    print(json.dumps(result), flush=True)
    skip = set(args.skip.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="rkd-bench-gpu-"))
    try:
        if "scoring" not in skip:
            result["scoring"] = scoring(args, pack, result["bf16_matmul_tflops"], tmp)
            print(json.dumps(result["scoring"], indent=1), flush=True)
        if "dense" not in skip:
            result["dense"] = dense(args, pack)
            print(json.dumps(result["dense"], indent=1), flush=True)
        if "encoding" not in skip:
            for name in ("colbert", "splade"):
                if getattr(args, name) is not None:
                    result[f"{name}_encoding"] = family_encoding(args, pack, getattr(args, name))
                    print(json.dumps(result[f"{name}_encoding"], indent=1), flush=True)
        if "colbert" not in skip:
            result["colbert"] = colbert(args, pack)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
