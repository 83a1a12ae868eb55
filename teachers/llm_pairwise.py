"""A causal LM as a pairwise teacher: for one query, is passage A or passage B more relevant?

Each comparison is asked in both orders, so the LLM's position bias cancels when the two are
combined: a stored judgement ``(query, doc_a, doc_b) → logit("A") − logit("B")`` is one order,
doc_a shown first, exactly as the LLM gave it. Short lists are compared all pairs against all
(``n(n−1)`` prompts); longer ones by PRP's sliding schedule (``passes`` bottom-up bubble passes
over the candidate order, ``2 Σ_p (n−1−p)`` prompts at most), which finds the top ``passes``.

References:
    PRP (Qin et al., 2024, arXiv:2306.17563): pairwise ranking prompting, both orders, sliding.
    PairDistill (Huang et al., 2024, arXiv:2410.01383): distilling pairwise reranker judgements.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from retrieval_kd.errors import ConfigError
from retrieval_kd.teachers.llm_common import CausalLM, fill

TEMPLATE = (
    "Query: {query}\nPassage A: {passage_a}\nPassage B: {passage_b}\n"
    "Which passage answers the query better? Answer with A or B only.\nAnswer:"
)
TARGETS = ("bradley-terry", "win-rate")

# What a schedule yields: the ordered (doc_a, doc_b) comparisons it needs next; it is sent back
# their values, aligned, and yields the next request until it is done.
Schedule = Generator[list[tuple[str, str]], np.ndarray, None]


def all_pairs(doc_ids: Sequence[str]) -> Schedule:
    """Every ordered pair of distinct docs, in one request: ``n(n−1)`` comparisons."""
    yield [(a, b) for a in doc_ids for b in doc_ids if a != b]


def sliding(doc_ids: Sequence[str], passes: int) -> Schedule:
    """PRP-sliding: ``passes`` bubble passes from the bottom of the list up, each adjacent pair
    asked in both orders and swapped when the lower one wins (the combined preference > 0)."""
    order = list(doc_ids)
    for p in range(min(passes, len(order) - 1)):
        for i in range(len(order) - 1, p, -1):
            upper, lower = order[i - 1], order[i]
            values = yield [(upper, lower), (lower, upper)]
            if (values[1] - values[0]) / 2 > 0:  # lower beats upper
                order[i - 1], order[i] = lower, upper


class LlmPairwiseTeacher:
    """Judges a query's candidate list by pairwise comparisons (a ``PairwiseTeacher``,
    :mod:`retrieval_kd.scores.judging`).

    Args:
        model: hub id, folder or ``.gguf`` file of any transformers causal LM.
        max_length: tokens kept of each passage; None: all.
        dtype, batch_size, device, system, chat: as for ``llm-pointwise``.
        template: the user message with ``{query}``, ``{passage_a}``, ``{passage_b}``.
        first, second: the answer labels; each must be one token.
        all_pairs_up_to: lists of at most this many candidates are compared all pairs against
            all; longer ones by the sliding schedule.
        passes: sliding passes (the top ``passes`` are sorted).
        targets: how per-pair targets are derived from the preferences: ``bradley-terry``
            (default) or ``win-rate``; recorded in the derived store's manifest, not part of the
            raw preferences' fingerprint.
    """

    kind = "llm-pairwise"
    judgement_kind = "pairwise"

    def __init__(
        self,
        model: str,
        max_length: int | None = None,
        dtype: str = "float32",
        batch_size: int = 8,
        device: str = "auto",
        template: str = TEMPLATE,
        first: str = "A",
        second: str = "B",
        system: str | None = None,
        chat: bool = True,
        all_pairs_up_to: int = 10,
        passes: int = 10,
        targets: str = "bradley-terry",
    ) -> None:
        if targets not in TARGETS:
            raise ConfigError(f"teacher option targets={targets!r}; choose from {list(TARGETS)}")
        if all_pairs_up_to < 2 or passes < 1:
            raise ConfigError(
                f"teacher options all_pairs_up_to={all_pairs_up_to}, passes={passes}: need >= 2 and >= 1"
            )
        fill(template, "template", query="", passage_a="", passage_b="")
        self.llm = CausalLM(model, dtype, batch_size, device, system, chat)
        self.template = template
        self.max_length = max_length
        self.labels = (first, second)
        self.ids = [self.llm.token_id(first, "first"), self.llm.token_id(second, "second")]
        self.all_pairs_up_to = all_pairs_up_to
        self.passes = passes
        self.targets = targets
        self._fingerprint = self.llm.fingerprint(
            kind=self.kind,
            template=template,
            max_length=max_length,
            labels=[first, second],
            schedule=[all_pairs_up_to, passes],
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self.llm.spec(),
            "max_length": self.max_length,
            "template": self.template,
            "labels": list(self.labels),
            "all_pairs_up_to": self.all_pairs_up_to,
            "passes": self.passes,
        }

    def schedule(self, doc_ids: Sequence[str]) -> Schedule:
        """The comparisons for one query's candidates (in their candidate order)."""
        if len(doc_ids) <= self.all_pairs_up_to:
            return all_pairs(doc_ids)
        return sliding(doc_ids, self.passes)

    def calls(self, n_docs: int) -> int:
        """LLM prompts for a list of ``n_docs`` (an upper bound for sliding: a comparison
        repeated in a later pass is read back from the store)."""
        if n_docs <= self.all_pairs_up_to:
            return n_docs * (n_docs - 1)
        return 2 * sum(n_docs - 1 - p for p in range(min(self.passes, n_docs - 1)))

    def prompts(self, queries: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[str]:
        a_kept = self.llm.truncate_all(first, self.max_length)
        b_kept = self.llm.truncate_all(second, self.max_length)
        return [
            self.llm.prompt(fill(self.template, "template", query=q, passage_a=a, passage_b=b))
            for q, a, b in zip(queries, a_kept, b_kept, strict=True)
        ]

    def prompt_tokens(self, queries: Sequence[str], first: Sequence[str], second: Sequence[str]) -> int:
        """How many prompt tokens these comparisons read (for cost estimates)."""
        return sum(len(ids) for ids in self.llm.encode(self.prompts(queries, first, second)))

    def judge(self, queries: Sequence[str], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        """Shapes: queries[N], first[N], second[N] → float32[N], logit(A) − logit(B) with
        ``first`` shown as passage A."""
        logits = self.llm.last_logits(self.prompts(queries, first, second), self.ids)
        return np.asarray(logits[:, 0] - logits[:, 1], dtype=np.float32)
