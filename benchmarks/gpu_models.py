"""Model folders in half the bytes for the trip to a GPU machine, and back to float32 there.

A device call carries at most 64 MiB, and a MiniLM folder in float32 is 68–88 MB. ``shrink``
copies a folder with its large float32 safetensors stored as float16; ``restore`` (on the
device machine) casts them back to float32 and records the new files' checksums in ``rkd.json``
(rounding to float16 changed the weights, so the old checksums no longer match). The restored
model is the original rounded to float16: the same architecture and the same cost per token,
which is what the throughput figures measure; agreement figures are taken on the unrounded
model on the CPU (BENCHMARKS.md).

    python benchmarks/gpu_models.py shrink runs/reranker/student .dev/m1/reranker
    python benchmarks/gpu_models.py restore .dev/m1/reranker        # on the device machine
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

MARK = "rkd_shrunk"


def shrink(src: Path, dst: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, dirs_exist_ok=True)
    for path in dst.rglob("*.safetensors"):
        if path.stat().st_size < 1 << 20:
            continue
        tensors = load_file(path)
        half = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
        save_file(half, path, metadata={MARK: "float16", "format": "pt"})
        print(f"{path}: {path.stat().st_size:,} bytes")


def restore(folder: Path) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from retrieval_kd.artifacts import file_checksums

    for path in folder.rglob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get(MARK) != "float16":
                continue
        tensors = load_file(path)
        save_file(
            {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()},
            path,
            {"format": "pt"},
        )
    record = folder / "rkd.json"
    if record.is_file():
        meta = json.loads(record.read_text())
        meta["files"] = file_checksums(folder, list(meta["files"]))
        record.write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    if sys.argv[1] == "shrink":
        shrink(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        for arg in sys.argv[2:]:
            restore(Path(arg))
