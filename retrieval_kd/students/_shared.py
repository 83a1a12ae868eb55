"""What every sentence-transformers student family shares: the forward pass (texts → pooled
embeddings, training groups → a (B, 1+n) score matrix by the family's own score function), the
weights fingerprint, and the saved folder's ``rkd.json``.

``rkd.json`` records the size and xxh3-64 hash of every file of the saved folder, checked before a
load reads them: safetensors validates only its header, so a flipped byte among the weights
loads silently (measured: 41 of 41 single-byte flips of a saved student's ``model.safetensors``
loaded without an error, 18 of them changing its vectors).
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from retrieval_kd.students import packing


def embed(model: Any, texts: Sequence[str]) -> Tensor:
    """Shapes: texts[N] → (N, dim) pooled embeddings, with gradients."""
    features = model.preprocess(list(texts))
    features = {k: v.to(model.device) if isinstance(v, Tensor) else v for k, v in features.items()}
    out: Tensor = model(features)["sentence_embedding"]
    return out


ENCODE_CHUNK = 2048  # texts tokenized per call (and length-sorted together)
# tokenize the next chunk in a thread while this one computes: None means on a GPU only (on a CPU
# the forward passes use every core and the thread would compete with them)
TOKENIZE_AHEAD: bool | None = None
# per model and (prompt, task): what its preprocess adds besides token ids (when lists from its
# tokenizer match them), or None where they do not
_LIST_TOKENS: weakref.WeakKeyDictionary[Any, dict[tuple[str | None, str | None], dict[str, Any] | None]] = (
    weakref.WeakKeyDictionary()
)


def resolve_prompt(model: Any, task: str | None) -> str | None:
    """The prompt sentence-transformers' ``encode_query`` / ``encode_document`` prepend for
    ``task`` (the model's prompt of that name, else its default prompt: its own
    ``_resolve_prompt``); an empty prompt is none."""
    prompts = getattr(model, "prompts", None) or {}
    return model._resolve_prompt(None, task if task in prompts else None) or None


def _token_lists(model: Any, texts: Sequence[str], prompt: str | None, timed: bool = True) -> list[list[int]]:
    began = time.perf_counter()
    ids: list[list[int]] = model.tokenizer(
        [prompt + t for t in texts] if prompt else list(texts),
        truncation=True,
        max_length=int(model.max_seq_length or 512),
    )["input_ids"]
    timer = getattr(model, "rkd_tokenize_timer", None)  # set by timing.timed_preprocess
    if timer is not None and timed:
        timer(time.perf_counter() - began)
    return ids


def _list_tokenizing(
    model: Any, texts: Sequence[str], prompt: str | None = None, task: str | None = None
) -> dict[str, Any] | None:
    """How to build ``model``'s features from token-id lists, or None where they would differ.

    transformers turns a padded batch into tensors through a Python ``flatten`` of every id
    (measured on an H100 machine: 2.8 s of the 3.7 s that ``preprocess`` took on 5,183 SciFact
    documents, the Rust tokenizer 0.33 s, every forward pass 0.44 s). Token-id lists skip it.
    Checked once per model, prompt and task on ``texts``' 16 longest and first 16: the ids must
    equal ``preprocess``'s, its mask a prefix of ones, its token types zeros and nothing else a
    tensor (a ColBERT query's expansion positions, say, send it to ``preprocess``).
    """
    known = _LIST_TOKENS.setdefault(model, {})
    if (prompt, task) in known:
        return known[prompt, task]
    spec = None
    if getattr(getattr(model, "tokenizer", None), "is_fast", False):
        longest = sorted(range(len(texts)), key=lambda i: -len(texts[i]))[:16]
        sample = [texts[i] for i in sorted(set(longest) | set(range(min(16, len(texts)))))]
        ref = _preprocess(model, sample, prompt, task)
        mine = _token_lists(model, sample, prompt)
        tensors = {k for k, v in ref.items() if isinstance(v, Tensor)}
        ok = tensors <= {"input_ids", "attention_mask", "token_type_ids"} and "input_ids" in tensors
        for row, ids in enumerate(mine if ok else []):
            mask = ref["attention_mask"][row].tolist()
            ok = ok and mask == [1] * len(ids) + [0] * (len(mask) - len(ids))
            ok = ok and ref["input_ids"][row, : len(ids)].tolist() == ids
            ok = ok and ("token_type_ids" not in ref or not ref["token_type_ids"][row].any())
        if ok:
            pad = model.tokenizer.pad_token_id or 0
            extra = {k: v for k, v in ref.items() if k not in tensors}
            spec = {"pad": int(pad), "types": "token_type_ids" in tensors, "extra": extra}
    known[prompt, task] = spec
    return spec


def _preprocess(
    model: Any, texts: Sequence[str], prompt: str | None, task: str | None, timed: bool = True
) -> Any:
    """``model.preprocess`` as ``encode`` calls it; ``timed=False`` unwraps the timing wrapper
    of :func:`~retrieval_kd.timing.timed_preprocess`, for work done ahead in a thread whose
    waiting is what the caller times instead."""
    run = model.preprocess if timed else getattr(model.preprocess, "__wrapped__", model.preprocess)
    kwargs: dict[str, Any] = {"prompt": prompt} if prompt else {}
    if task is not None:
        kwargs["task"] = task
    return run(list(texts), **kwargs)


def _extents(features: Mapping[str, Any], pad: int) -> list[int]:
    """Per row: one past its last column that is not padding, in any per-token feature (a
    ColBERT query's ``[MASK]`` expansion can be scored with an attention mask of 0)."""
    import torch

    mask = features["attention_mask"]
    live = mask.bool()
    for key, value in features.items():
        if key != "attention_mask" and isinstance(value, Tensor) and value.shape == mask.shape:
            live = live | (value != pad if key == "input_ids" else value.bool())
    columns = torch.arange(1, mask.shape[1] + 1)
    out: list[int] = (live.long() * columns).amax(1).tolist()
    return out


def budgeted_outputs(
    model: Any, texts: Sequence[str], batch_size: int, task: str | None = None
) -> Iterator[tuple[int, list[tuple[np.ndarray, dict[str, Any]]]]] | None:
    """A sentence-transformers model's outputs for ``texts`` as ``encode_query`` (``task`` =
    "query") or ``encode_document`` compute them, one chunk at a time: ``(chunk start, [(rows
    in the chunk, output features on the model's device), ...])``. None for a model this does not
    cover (a Router: the caller uses ``encode_*``).

    ``encode`` tokenizes each batch of ``batch_size`` texts just before its forward pass and
    copies every output back as it goes, so on a GPU the model waits for the tokenizer (issue 13:
    a 3-layer student encoded no faster than a 6-layer one). Here:

    - each chunk of :data:`ENCODE_CHUNK` texts is tokenized by one fast-tokenizer call (Rust,
      every core) into id lists (:func:`_list_tokenizing`; ``preprocess`` where lists would
      differ);
    - on a GPU, batches hold about ``batch_size × max_seq_length`` tokens of length-sorted texts
      instead of a fixed count (on a CPU at most ``batch_size`` texts, as in ``encode``);
    - outputs stay on the device until the chunk ends;
    - on a GPU the next chunk is tokenized in a thread while this one computes: the tokenizer
      runs in Rust without the GIL and CUDA kernels run asynchronously (a DataLoader would need
      the model's collate in worker processes).

    Padding is to each batch's longest text, and masked positions change nothing, so outputs
    equal ``encode``'s to float rounding.
    """
    if any(type(m).__name__ == "Router" for m in model):
        return None
    return _budgeted(model, list(texts), batch_size, task)


def _budgeted(
    model: Any, texts: list[str], batch_size: int, task: str | None
) -> Iterator[tuple[int, list[tuple[np.ndarray, dict[str, Any]]]]]:
    import torch

    from retrieval_kd.teachers.pair_tokens import budget_batches

    prompt = resolve_prompt(model, task)
    tokens = batch_size * int(model.max_seq_length or 512)
    spec = _list_tokenizing(model, texts, prompt, task)
    pad = int(getattr(model.tokenizer, "pad_token_id", None) or 0)
    ahead = str(model.device).startswith("cuda") if TOKENIZE_AHEAD is None else TOKENIZE_AHEAD
    # On a CPU a batch holds at most batch_size texts, as in encode: bigger batches of short texts
    # gained nothing there and a SPLADE batch's (tokens × vocabulary) logits grow with them.
    max_pairs = 16 * batch_size if ahead else batch_size

    def tokenize(chunk: list[str], timed: bool) -> tuple[list[int], Any]:
        if spec is not None:
            ids = _token_lists(model, chunk, prompt, timed)
            return [len(x) for x in ids], ids
        features = _preprocess(model, chunk, prompt, task, timed)
        return _extents(features, pad), features

    costs = packing.flop_costs(model)  # None off the CPU: nothing is packed there
    run = _forward(model, {"task": task} if task is not None else {})
    starts = list(range(0, len(texts), ENCODE_CHUNK))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rkd-tokenize") if ahead else None
    pending: Future[tuple[list[int], Any]] | None = None
    model.eval()
    try:
        for n, start in enumerate(starts):
            chunk = texts[start : start + ENCODE_CHUNK]
            if pending is None:
                lengths, tokenized = tokenize(chunk, timed=True)
            else:
                began = time.perf_counter()
                lengths, tokenized = pending.result()
                timer = getattr(model, "rkd_tokenize_timer", None)
                if timer is not None:
                    timer(time.perf_counter() - began)  # only the wait shows: the rest overlapped
            if pool is not None and n + 1 < len(starts):
                following = texts[starts[n + 1] : starts[n + 1] + ENCODE_CHUNK]
                pending = pool.submit(tokenize, following, False)
            kept = []
            with torch.inference_mode():
                for rows in budget_batches(lengths, tokens, max_pairs):
                    width = max(lengths[i] for i in rows)
                    out = None
                    if spec is not None:
                        ids = [tokenized[i] for i in rows]
                        batch = _padded(ids, width, spec)
                        if costs is not None and packing.worth_packing([lengths[i] for i in rows], costs):
                            out = packing.packed_outputs(model, ids, batch, (prompt, task), run)
                    else:
                        batch = _rows_of(tokenized, rows, width, len(chunk))
                    if out is None:
                        batch = {
                            k: v.to(model.device, non_blocking=True) if isinstance(v, Tensor) else v
                            for k, v in batch.items()
                        }
                        out = model(batch, task=task) if task is not None else model(batch)
                    kept.append((np.asarray(rows, dtype=np.int64), out))
            yield start, kept
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _forward(model: Any, kwargs: dict[str, Any]) -> packing.Modules:
    """``run(features, start, stop)``: ``model``'s modules ``[start:stop]`` on ``features``, each
    given the keyword arguments ``BaseModel.forward`` would give it (``run(f, 0, None)`` is
    ``model(f, **kwargs)``). sentence-transformers has no way to stop between modules, which a
    packed batch needs (:mod:`~retrieval_kd.students.packing`), hence this copy of its routing."""
    children = list(model.named_children())
    routed = getattr(model, "module_kwargs", None) or {}

    def run(features: dict[str, Any], start: int, stop: int | None) -> dict[str, Any]:
        for name, module in children[start:stop]:
            allowed = set(routed.get(name, [])) | set(getattr(module, "forward_kwargs", ()))
            features = module(features, **{k: v for k, v in kwargs.items() if k in allowed})
        return features

    return run


def _rows_of(features: Mapping[str, Any], rows: list[int], width: int, n: int) -> dict[str, Any]:
    """Rows of a chunk's padded features, per-token tensors cut to ``width`` columns."""
    import torch

    index = torch.tensor(rows)
    shape = features["attention_mask"].shape
    return {
        k: (v[index, :width] if v.shape == shape else v[index])
        if isinstance(v, Tensor) and v.ndim and v.shape[0] == n
        else v
        for k, v in features.items()
    }


def encode_budgeted(
    model: Any, texts: Sequence[str], batch_size: int, task: str | None = None
) -> np.ndarray | None:
    """Pooled embeddings of ``texts`` through :func:`budgeted_outputs`; None for a model it
    does not cover (the caller uses ``encode_*``).

    Shapes: texts[N] → float32[N, dim].
    """
    import torch

    chunks = budgeted_outputs(model, texts, batch_size, task)
    if chunks is None:
        return None
    parts: list[np.ndarray] = []
    for _, kept in chunks:
        first = kept[0][1]["sentence_embedding"]
        out = torch.empty(
            (sum(len(r) for r, _ in kept), first.shape[1]), dtype=torch.float32, device=first.device
        )
        for rows, features in kept:
            out[torch.from_numpy(rows).to(first.device)] = features["sentence_embedding"].float()
        parts.append(out.cpu().numpy())
    return np.concatenate(parts) if parts else None


def _padded(ids: list[list[int]], width: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Features of one batch from token-id lists, right-padded to ``width``."""
    import torch

    input_ids = np.full((len(ids), width), spec["pad"], dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    batch: dict[str, Any] = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
    }
    if spec["types"]:
        batch["token_type_ids"] = torch.zeros((len(ids), width), dtype=torch.long)
    return {**batch, **spec["extra"]}


def group_scores(
    model: Any,
    query_batch: Sequence[str],
    doc_groups: Sequence[Sequence[str]],
    score: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Shapes: query_batch[B], doc_groups[B][1+n] → (B, 1+n) by ``score(q (B, dim),
    d (B, 1+n, dim))``."""
    width = len(doc_groups[0])
    if any(len(g) != width for g in doc_groups):
        raise ValueError("every doc group needs the same number of candidates")
    q = embed(model, query_batch)  # (B, dim)
    d = embed(model, [t for g in doc_groups for t in g]).view(len(doc_groups), width, -1)  # (B, 1+n, dim)
    return score(q, d)


def weights_hash(model: Any, settings: bytes) -> str:
    """Hash of a model's weights and the ``settings`` (the family's own encoding of everything
    else that changes an output): equal hashes give equal representations (a fingerprint)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(settings)
    return h.hexdigest()[:16]


def read_meta(folder: Path) -> dict[str, Any]:
    """A saved student's ``rkd.json`` (empty for a plain sentence-transformers folder), after
    checking the folder's files against the checksums it records (students saved before rkd
    recorded them are read unchecked).

    Raises:
        DataError: a recorded file is missing or damaged (one line naming it).
    """
    from retrieval_kd.artifacts import verify_checksums
    from retrieval_kd.io import read_json_object

    meta = folder / "rkd.json"
    if not meta.is_file():
        return {}
    data = dict(read_json_object(meta))
    if "files" in data:
        hint = "the student is damaged: save or train it again"
        verify_checksums(folder, data["files"], meta, hint)
    return data


def save_student(student: Any, path: Path, provenance: Mapping[str, Any] | None, **extra: Any) -> None:
    """Writes the student's sentence-transformers folder, then ``rkd.json`` last (its presence
    marks a complete save) with the checksums of every other file, and keeps the merged
    provenance on the student.

    A student saved over an older one (or to a new path) is written beside it and swapped in
    whole (:func:`~retrieval_kd.artifacts.replacing`): a killed save leaves the old student,
    never new weights beside the old ``rkd.json``.
    """
    from retrieval_kd import __version__
    from retrieval_kd.artifacts import file_checksums, replacing
    from retrieval_kd.io import atomic_write_json

    merged = {**student.provenance, **(provenance or {})}
    with replacing(Path(path), _holds_student) as folder:
        student.model.save(str(folder))
        # Every file but rkd.json and hidden ones (a stage marker is written after the save).
        names = sorted(
            p.name for p in folder.iterdir() if p.name != "rkd.json" and not p.name.startswith(".")
        )
        atomic_write_json(
            folder / "rkd.json",
            {
                "kind": student.kind,
                "rkd_version": __version__,
                "student_fingerprint": student.fingerprint(),
                **extra,
                "provenance": merged,
                "files": file_checksums(folder, names),
            },
        )
    student.provenance = merged


def _holds_student(path: Path) -> bool:
    return any((path / name).exists() for name in ("rkd.json", "modules.json", "model.safetensors"))
