"""A causal LM as a pointwise teacher: score = logit("yes") − logit("no") at the answer position.

References:
    monoT5 (Nogueira et al., 2020, arXiv:2003.06713) reads true/false logits; InRanker (Laitz et
    al., 2024, arXiv:2401.06910) distils them; Rank1 (Weller et al., 2025, arXiv:2502.18418)
    reads them after generated reasoning (``reasoning_tokens``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval_kd.errors import ConfigError
from retrieval_kd.teachers.llm_common import CausalLM, fill

TEMPLATE = (
    "Query: {query}\nPassage: {passage}\n"
    "Does the passage answer the query? Answer with yes or no only.\nAnswer:"
)


class LlmPointwiseTeacher:
    """Scores (query, passage) pairs by an LLM's yes/no answer logits.

    Args:
        model: hub id, folder or ``.gguf`` file of any transformers causal LM.
        max_length: passage tokens kept (the prompt around it is never cut); None: all.
        dtype: ``float32``; ``bfloat16`` on a GPU.
        batch_size: prompts per forward pass (length-ordered, left-padded).
        device: ``auto``, ``cpu``, ``cuda``...
        template: the user message; ``{query}`` and ``{passage}`` are filled in. It is wrapped
            in the model's chat template when the model has one (``chat=False`` to skip).
        yes, no: the answer words; each must be one token of the model's vocabulary.
        system: a system message for the chat template.
        reasoning_tokens: Rank1-style: greedily generate up to this many tokens first, append
            ``answer_prompt``, then read the yes/no logits. 0: answer at once.
        answer_prompt: text after the reasoning that asks for the one-word answer.
    """

    kind = "llm-pointwise"

    def __init__(
        self,
        model: str,
        max_length: int | None = None,
        dtype: str = "float32",
        batch_size: int = 8,
        device: str = "auto",
        template: str = TEMPLATE,
        yes: str = "yes",
        no: str = "no",
        system: str | None = None,
        chat: bool = True,
        reasoning_tokens: int = 0,
        answer_prompt: str = "\nFinal answer (yes or no):",
    ) -> None:
        if reasoning_tokens < 0:
            raise ConfigError(f"teacher option reasoning_tokens must be >= 0, got {reasoning_tokens}")
        fill(template, "template", query="", passage="")
        self.llm = CausalLM(model, dtype, batch_size, device, system, chat)
        self.template = template
        self.max_length = max_length
        self.answers = (yes, no)
        self.ids = [self.llm.token_id(yes, "yes"), self.llm.token_id(no, "no")]
        self.reasoning_tokens = reasoning_tokens
        self.answer_prompt = answer_prompt
        # score_pairs tokenizes the next stored part in a thread while this one computes (its
        # _Prefetch) when this is set: on a GPU the forward passes wait for no prompt; on a CPU
        # they use every core and the thread would compete
        self.prepare_ahead = self.llm.device.startswith("cuda")
        self._fingerprint = self.llm.fingerprint(
            kind=self.kind,
            template=template,
            max_length=max_length,
            answers=[yes, no],
            reasoning=[reasoning_tokens, answer_prompt if reasoning_tokens else None],
        )

    def fingerprint(self) -> str:
        return self._fingerprint

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self.llm.spec(),
            "max_length": self.max_length,
            "template": self.template,
            "answers": list(self.answers),
            "reasoning_tokens": self.reasoning_tokens,
        }

    def prompts(self, queries: Sequence[str], passages: Sequence[str]) -> list[str]:
        """The full prompt text of each pair (chat template applied)."""
        kept = self.llm.truncate_all(passages, self.max_length)
        return [
            self.llm.prompt(fill(self.template, "template", query=q, passage=p))
            for q, p in zip(queries, kept, strict=True)
        ]

    def prompt_tokens(self, queries: Sequence[str], passages: Sequence[str]) -> int:
        """How many prompt tokens scoring these pairs reads (for cost estimates)."""
        return sum(len(ids) for ids in self.llm.encode(self.prompts(queries, passages)))

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Shapes: queries[N], passages[N] → float32[N], logit(yes) − logit(no)."""
        return self.score_prepared(self.prepare(queries, passages))

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> list[list[int]]:
        """Everything before the forward passes, on the CPU: prompts filled, wrapped in the chat
        template and tokenized (what ``score_pairs`` runs ahead for the next part)."""
        return self.llm.encode(self.prompts(queries, passages))

    def score_prepared(self, encoded: list[list[int]]) -> np.ndarray:
        """:meth:`score` of :meth:`prepare`'s token ids."""
        if self.reasoning_tokens:
            thought = self.llm.generate_encoded(encoded, self.reasoning_tokens)
            suffix = self.llm.tokenizer.encode(self.answer_prompt, add_special_tokens=False)
            encoded = [t + suffix for t in thought]
        logits = self.llm.logits_of(encoded, self.ids)
        return np.asarray(logits[:, 0] - logits[:, 1], dtype=np.float32)
