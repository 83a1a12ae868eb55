"""Tokenize each unique text once and assemble (query, passage) pair inputs from the pieces.

A cross-encoder teacher scores every candidate pair of a query: the query is the same for its 30
to 1,000 passages, and a passage recurs under several queries. ``CrossEncoder.predict``
tokenizes each pair as a whole, so the same texts are tokenized again and again, and on a GPU the
tokenizer, not the model, sets the pace (issue 13: 1,476 pairs/s tokenizing vs 15,630 pairs/s of
forward passes on an H100). Neither sentence-transformers nor tokenizers assembles pair inputs
from cached single-text encodings, so it is done here:

- each text is tokenized once without special tokens (and kept in a bounded cache);
- the pair template (special tokens around and between the two texts, and their token type ids)
  is read off the tokenizer's own output for a probe pair, so it is whatever the model uses
  (``[CLS] q [SEP] d [SEP]`` for BERT, ``<s> q </s></s> d </s>`` for RoBERTa);
- truncation repeats the tokenizer's ``longest_first`` rule where it is unambiguous (the shorter
  text kept whole, the longer cut to fit); a pair whose texts both exceed half the budget is
  tokenized by the tokenizer itself;
- :meth:`PairAssembler.check` compares assembled inputs with the tokenizer's on sample pairs, and
  a teacher falls back to plain tokenization when they differ, so scores never change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PairAssembler", "budget_batches"]


@dataclass(frozen=True)
class _Template:
    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    # token type ids: of the prefix, the first text, the middle, the second text, the suffix
    types: tuple[list[int], int, list[int], int, list[int]]


def _find(haystack: list[int], needle: list[int], start: int = 0) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    return -1


class PairAssembler:
    """Pair inputs for a tokenizer, from texts tokenized once each.

    Args:
        tokenizer: a transformers tokenizer (fast or slow) that encodes text pairs.
        max_length: tokens per pair, special tokens included.
        cache_size: texts whose token ids are kept (least recently used dropped first).

    Raises:
        ValueError: the tokenizer's pair template cannot be read off a probe pair (the caller
            then tokenizes pairs the plain way).
    """

    def __init__(self, tokenizer: Any, max_length: int, cache_size: int = 200_000) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        if getattr(tokenizer, "truncation_side", "right") != "right":
            raise ValueError("the tokenizer truncates on the left")
        self.template = self._template()
        self.budget = self.max_length - len(
            self.template.prefix + self.template.middle + self.template.suffix
        )
        if self.budget < 2:
            raise ValueError(f"max_length {max_length} leaves no room for text")

    def _template(self) -> _Template:
        a, b = (self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("alpha", "beta"))
        full = self.tokenizer("alpha", "beta", return_token_type_ids=True)
        ids = list(full["input_ids"])
        types = list(full.get("token_type_ids") or [0] * len(ids))
        i = _find(ids, a)
        j = _find(ids, b, i + len(a)) if i >= 0 else -1
        if i < 0 or j < 0 or not a or not b:
            raise ValueError("the probe pair's texts are not found in its encoding")
        k = j + len(b)
        return _Template(
            ids[:i],
            ids[i + len(a) : j],
            ids[k:],
            (types[:i], types[i], types[i + len(a) : j], types[j], types[k:]),
        )

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens), from the cache where it has them."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            encoded = self.tokenizer(missing, add_special_tokens=False)["input_ids"]
            for text, ids in zip(missing, encoded, strict=True):
                self._cache[text] = list(ids)
        out = []
        for text in texts:
            self._cache.move_to_end(text)
            out.append(self._cache[text])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def whole(self, query: str, passage: str) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of one pair from the tokenizer itself: the reference
        :meth:`check` compares with, and the inputs of a pair whose truncation is ambiguous."""
        enc = self.tokenizer(
            query, passage, truncation="longest_first", max_length=self.max_length, return_token_type_ids=True
        )
        ids = list(enc["input_ids"])
        return ids, list(enc.get("token_type_ids") or [0] * len(ids))

    def batches(
        self,
        queries: Sequence[str],
        passages: Sequence[str],
        tokens: int,
        max_pairs: int,
        pad_id: int,
        multiple: int = 1,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Padded inputs of aligned pairs in token-budget batches (:func:`budget_batches`):
        ``(pair positions, input_ids, token_type_ids, attention_mask)`` per batch, int64.

        Built with array operations: every batch is a gather from one array holding the template
        pieces and each unique text's ids once, its index computed from each row's segment
        boundaries. Assembling Python lists pair by pair held the GIL for most of a second per
        10k pairs and halved the throughput of a GPU scorer's forward passes beside it.

        Truncation repeats ``longest_first`` where it is unambiguous: past the budget, the shorter
        text stays whole and the longer is cut to fit; a pair whose texts both exceed half the
        budget takes the tokenizer's own inputs (:meth:`whole`).

        ``multiple`` pads each batch's width up to a multiple of it (as the tokenizer's
        ``pad_to_multiple_of``: tensor-core kernels prefer widths divisible by 8); masked columns
        change no score.
        """
        t = self.template
        q_ids, p_ids = self.tokens(queries), self.tokens(passages)
        unique: dict[tuple[int, int], int] = {}  # (id(list), its type id) → offset in the source
        pieces: list[np.ndarray] = [
            np.asarray(x, dtype=np.int64) for x in (t.prefix, t.middle, t.suffix, [pad_id])
        ]
        offsets = np.cumsum([0, *(len(x) for x in pieces)])
        kinds = [np.asarray(x, dtype=np.int64) for x in (t.types[0], t.types[2], t.types[4], [0])]
        start = int(offsets[-1])

        def locate(ids: list[int], type_id: int) -> int:
            nonlocal start
            key = (id(ids), type_id)  # a text can be a query and a passage
            if key not in unique:
                unique[key] = start
                pieces.append(np.asarray(ids, dtype=np.int64))  # one C call, no Python loop
                kinds.append(np.full(len(ids), type_id, dtype=np.int64))
                start += len(ids)
            return unique[key]

        q_off = np.array([locate(ids, t.types[1]) for ids in q_ids], dtype=np.int64)
        p_off = np.array([locate(ids, t.types[3]) for ids in p_ids], dtype=np.int64)
        nq = np.array([len(x) for x in q_ids], dtype=np.int64)
        n_p = np.array([len(x) for x in p_ids], dtype=np.int64)
        # longest_first where unambiguous; both over half the budget: the tokenizer's own inputs
        over = nq + n_p > self.budget
        whole = over & (np.minimum(nq, n_p) > self.budget // 2)
        cut = over & ~whole
        nq, n_p = (
            np.where(cut & (nq >= n_p), self.budget - n_p, nq),
            np.where(cut & (nq < n_p), self.budget - nq, n_p),
        )
        lengths = len(t.prefix) + nq + len(t.middle) + n_p + len(t.suffix)
        for i in np.flatnonzero(whole).tolist():  # one more source piece each
            ids, types = self.whole(queries[i], passages[i])
            q_off[i] = start
            pieces.append(np.asarray(ids, dtype=np.int64))
            kinds.append(np.asarray(types, dtype=np.int64))
            start += len(ids)
            lengths[i] = len(ids)
        source, source_types = np.concatenate(pieces), np.concatenate(kinds)
        pad_at = int(offsets[3])
        out = []
        for rows in budget_batches(lengths.tolist(), tokens, max_pairs):
            r = np.asarray(rows, dtype=np.int64)
            width = -(-int(lengths[r].max()) // multiple) * multiple
            j = np.arange(width, dtype=np.int64)[None, :]
            b1 = len(t.prefix)
            b2 = b1 + nq[r, None]
            b3 = b2 + len(t.middle)
            b4 = b3 + n_p[r, None]
            b5 = lengths[r, None]
            index = np.select(
                [j < b1, j < b2, j < b3, j < b4, j < b5],
                [
                    offsets[0] + j,
                    q_off[r, None] + j - b1,
                    offsets[1] + j - b2,
                    p_off[r, None] + j - b3,
                    offsets[2] + j - b4,
                ],
                default=pad_at,
            )
            index = np.where(whole[r, None], np.where(j < b5, q_off[r, None] + j, pad_at), index)
            out.append((r, source[index], source_types[index], (j < b5).astype(np.int64)))
        return out

    def check(self, queries: Sequence[str], passages: Sequence[str]) -> bool:
        """True when the assembled inputs equal the tokenizer's own for these pairs."""
        for rows, ids, types, mask in self.batches(queries, passages, 1 << 16, len(queries) or 1, 0):
            for row, i in enumerate(rows.tolist()):
                want_ids, want_types = self.whole(queries[i], passages[i])
                n = int(mask[row].sum())
                if n != len(want_ids) or ids[row, :n].tolist() != want_ids:
                    return False
                if types[row, :n].tolist() != want_types:
                    return False
        return True


def budget_batches(lengths: Sequence[int], tokens: int, max_pairs: int) -> list[list[int]]:
    """Indices grouped into batches of length-sorted pairs (longest first), each holding at most
    ``tokens`` padded tokens (pairs × its longest pair) and ``max_pairs`` pairs; a pair longer
    than ``tokens`` gets a batch of its own.

    Example:
        >>> budget_batches([5, 100, 7, 98, 6], tokens=200, max_pairs=8)
        [[1, 3], [2, 4, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * longest > tokens or len(current) >= max_pairs):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
