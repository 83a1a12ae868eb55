"""Repeatable runs: fixed thread counts, deterministic kernels, and the facts a result depends on.

What varies a CPU result, measured on the tiny recipe (losses differ in the 6th digit, then the
difference grows with every optimiser step): the intra-op thread count (a float sum split over 1
or 2 threads rounds differently) and the CPU's vector instructions (``ATEN_CPU_CAPABILITY``
avx2 vs default). Seeds already fix the rest (data order, dropout, per-epoch negatives). So the
same machine kind with the same thread count gives bit-for-bit the same report; across CPUs or
against a GPU only a tolerance holds (README, "Reproducing the figures"). rkd fixes the thread
count when asked (``rkd --threads N`` or ``RKD_NUM_THREADS``) and records it, with the CPU
capability, in every report.
"""

from __future__ import annotations

import os
from typing import Any

from retrieval_kd.errors import RkdError

THREADS_ENV = "RKD_NUM_THREADS"


def threads_from_env() -> int | None:
    """``RKD_NUM_THREADS`` as a positive int, None when unset.

    Raises:
        RkdError: a value that is not a positive integer.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise RkdError(f"{THREADS_ENV}={raw!r}: expected a positive integer (the torch CPU thread count)")
    return int(raw)


def set_threads(threads: int | None = None) -> None:
    """Sets torch's intra-op thread count to ``threads`` (or ``RKD_NUM_THREADS``); leaves
    torch's default (the physical cores) when neither is given."""
    n = threads if threads is not None else threads_from_env()
    if n is None:
        return
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def deterministic_kernels() -> None:
    """Asks torch for deterministic kernels (CPU and CUDA; a kernel with none warns instead of
    failing). cuBLAS needs a fixed workspace for repeatable sums: set before its first call."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def host() -> dict[str, Any]:
    """What a floating-point result depends on, for reports: CPU count, torch threads, the CPU
    kernels torch dispatches to, torch's version and the GPU if any."""
    import torch

    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts
