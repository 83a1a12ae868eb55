"""A causal LM as a listwise teacher: it reads a window of labelled passages and ranks them.

Two modes:

- ``generate`` (RankGPT): the LLM writes a permutation such as ``C > A > B``; windows of
  ``window`` passages slide from the bottom of the list to the top by ``step``, ``passes``
  times, each reordering its window in place. The output is parsed robustly: unknown and
  repeated labels are dropped, missing ones are appended in their previous order, and each kind
  of fault is counted (:attr:`LlmListwiseTeacher.malformed`), never raised.
- ``first`` (FIRST): one forward pass per window; the logits of the label tokens at the first
  answer position are the window's scores, and the window is reordered by them.

The final order becomes per-pair targets by a recorded rule: ``score = −rank`` (rank 0 at the
top), so margins between candidates are rank differences.

References:
    RankGPT (Sun et al., 2023, arXiv:2304.09542); FIRST (Reddy et al., 2024, arXiv:2406.15657).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval_kd.errors import ConfigError
from retrieval_kd.teachers.llm_common import CausalLM, fill

TEMPLATE = (
    "Rank the {count} passages below by how well they answer the query.\nQuery: {query}\n"
    "{passages}\nAnswer with the labels in order, most relevant first, like B > A > C.\nAnswer:"
)
MODES = ("generate", "first")
LABELS = string.ascii_uppercase
RULE = "score = -rank (rank 0 at the top of the final order)"


def parse_permutation(text: str, labels: Sequence[str]) -> tuple[list[int], Counter[str]]:
    """The window order an LLM wrote: indices into ``labels``, every one exactly once.

    Labels are read as standalone tokens (``[B]``, ``B >``, ``B,``); unknown ones and repeats
    are dropped, missing ones appended in window order. Returns the order and the count of each
    fault (``unknown``, ``repeated``, ``missing``).

    Example:
        >>> order, faults = parse_permutation("C > A > C > Z", ["A", "B", "C"])
        >>> order, dict(faults)
        ([2, 0, 1], {'unknown': 1, 'repeated': 1, 'missing': 1})
    """
    index = {label: i for i, label in enumerate(labels)}
    faults: Counter[str] = Counter(unknown=0, repeated=0, missing=0)
    order: list[int] = []
    for token in re.findall(r"(?<![A-Za-z])[A-Z](?![A-Za-z])", text):
        i = index.get(token)
        if i is None:
            faults["unknown"] += 1
        elif i in order:
            faults["repeated"] += 1
        else:
            order.append(i)
    missing = [i for i in range(len(labels)) if i not in order]
    faults["missing"] += len(missing)
    return order + missing, faults


def windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each window of one pass, from the bottom of a list of ``n`` up.

    Example:
        >>> windows(10, 4, 2)
        [(6, 10), (4, 8), (2, 6), (0, 4)]
    """
    out = []
    end = n
    while True:
        start = max(end - window, 0)
        out.append((start, end))
        if start == 0:
            return out
        end -= step


class LlmListwiseTeacher:
    """Ranks a query's candidates with sliding windows (a ``ListTeacher``,
    :mod:`retrieval_kd.scores.judging`).

    Args:
        model: hub id, folder or ``.gguf`` file of any transformers causal LM.
        max_length: tokens kept of each passage; None: all.
        dtype, batch_size, device, system, chat: as for ``llm-pointwise``.
        template: the user message with ``{query}``, ``{passages}`` (``[A] text`` lines) and
            ``{count}``.
        mode: ``generate`` (RankGPT) or ``first`` (FIRST).
        window, step, passes: the sliding windows.
        max_new_tokens: generation budget of one permutation (``generate``).
    """

    kind = "llm-listwise"

    def __init__(
        self,
        model: str,
        max_length: int | None = 128,
        dtype: str = "float32",
        batch_size: int = 4,
        device: str = "auto",
        template: str = TEMPLATE,
        mode: str = "generate",
        window: int = 20,
        step: int = 10,
        passes: int = 1,
        max_new_tokens: int = 100,
        system: str | None = None,
        chat: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"teacher option mode={mode!r}; choose from {list(MODES)}")
        if not (2 <= window <= len(LABELS) and 1 <= step <= window and passes >= 1):
            raise ConfigError(
                f"teacher options window={window}, step={step}, passes={passes}: need "
                f"2 <= window <= {len(LABELS)}, 1 <= step <= window, passes >= 1"
            )
        fill(template, "template", query="", passages="", count="")
        self.llm = CausalLM(model, dtype, batch_size, device, system, chat)
        self.template = template
        self.max_length = max_length
        self.mode = mode
        self.window, self.step, self.passes = window, step, passes
        self.max_new_tokens = max_new_tokens
        self.label_ids = [self.llm.token_id(label, "labels") for label in LABELS[:window]]
        self.malformed: Counter[str] = Counter()
        self._fingerprint = self.llm.fingerprint(
            kind=self.kind,
            template=template,
            max_length=max_length,
            mode=mode,
            windows=[window, step, passes],
            max_new_tokens=max_new_tokens if mode == "generate" else None,
            rule=RULE,
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self.llm.spec(),
            "mode": self.mode,
            "window": self.window,
            "step": self.step,
            "passes": self.passes,
            "rule": RULE,
        }

    def calls(self, n_docs: int) -> int:
        """LLM calls (generations or forwards) for a list of ``n_docs``."""
        return self.passes * len(windows(n_docs, self.window, self.step)) if n_docs > 1 else 0

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        lines = "\n".join(
            f"[{LABELS[i]}] {self.llm.truncate(p, self.max_length)}" for i, p in enumerate(passages)
        )
        return self.llm.prompt(
            fill(self.template, "template", query=query, passages=lines, count=str(len(passages)))
        )

    def rank_lists(self, queries: Sequence[str], lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Each list's scores (``−rank`` in the final order), windows of all lists batched.

        Shapes:
            queries[Q], lists[Q][n_q] → Q arrays of float32[n_q]
        """
        orders = [list(range(len(texts))) for texts in lists]
        plans = [windows(len(texts), self.window, self.step) if len(texts) > 1 else [] for texts in lists]
        for _ in range(self.passes):
            for w in range(max((len(p) for p in plans), default=0)):
                todo = [(q, plans[q][w]) for q in range(len(lists)) if w < len(plans[q])]
                if not todo:
                    continue
                prompts = [
                    self.prompt(queries[q], [lists[q][i] for i in orders[q][a:b]]) for q, (a, b) in todo
                ]
                for (q, (a, b)), perm in zip(
                    todo, self._windows(prompts, [b - a for _, (a, b) in todo]), strict=True
                ):
                    inside = orders[q][a:b]
                    orders[q][a:b] = [inside[i] for i in perm]
        out = []
        for order in orders:
            scores = np.zeros(len(order), dtype=np.float32)
            scores[order] = -np.arange(len(order), dtype=np.float32)
            out.append(scores)
        return out

    def _windows(self, prompts: list[str], sizes: list[int]) -> list[list[int]]:
        """The new order of each window, by generation or by first-token logits."""
        if self.mode == "first":
            logits = self.llm.last_logits(prompts, self.label_ids)
            return [list(np.argsort(-logits[i, :n], kind="stable")) for i, n in enumerate(sizes)]
        out = []
        lengths = [len(ids) for ids in self.llm.encode(prompts)]
        generated = self.llm.generate(prompts, self.max_new_tokens)
        for ids, start, n in zip(generated, lengths, sizes, strict=True):
            text = self.llm.tokenizer.decode(ids[start:], skip_special_tokens=True)
            order, faults = parse_permutation(str(text), LABELS[:n])
            self.malformed.update(faults)
            out.append(order)
        return out
