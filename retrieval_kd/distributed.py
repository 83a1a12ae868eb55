"""One sharding mechanism for every stage: torchrun's RANK/WORLD_SIZE (or an explicit ``I/N``).

Under ``torchrun --nproc-per-node N -m retrieval_kd ...`` each rank scores its own shard into
its own store writer, the Trainer runs data-parallel, and the stages that write one shared
artifact (mining, saving a student, indexing, evaluation) run on rank 0 while the others wait.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from retrieval_kd.errors import RkdError


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RkdError(
            f"environment variable {name}={raw!r}: expected an integer (torchrun sets it)"
        ) from None


def world() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment; ``(0, 1)`` outside it.

    Example:
        >>> import os
        >>> os.environ.pop("RANK", None), os.environ.pop("WORLD_SIZE", None)  # doctest: +ELLIPSIS
        (...)
        >>> world()
        (0, 1)
    """
    rank, size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if size < 1 or not 0 <= rank < size:
        raise RkdError(f"RANK={rank}, WORLD_SIZE={size}: need 0 <= RANK < WORLD_SIZE")
    return rank, size


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)``; None → this process's rank and world size.

    Example:
        >>> parse_shard("1/4")
        (1, 4)
    """
    if text is None:
        return world()
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise RkdError(f"--shard {text!r}: expected I/N such as 0/4") from None
    if not 0 <= i < n:
        raise RkdError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def writer_name(shard: tuple[int, int]) -> str:
    """The score-store writer of one shard: every entry point names it the same way, so a rerun
    of shard ``i`` of ``n`` resumes the parts that shard wrote before.

    Example:
        >>> writer_name((0, 1)), writer_name((1, 2))
        ('shard0of1', 'shard1of2')
    """
    return f"shard{shard[0]}of{shard[1]}"


def is_main() -> bool:
    return world()[0] == 0


def barrier() -> None:
    """Waits for every rank (no-op in one process); joins torchrun's process group if needed."""
    if world()[1] == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo" if not _cuda() else None)
    dist.barrier()


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def all_agree(check: Callable[[], bool]) -> bool:
    """Evaluates ``check`` on every rank between two barriers, so no rank can see a file that
    another wrote after deciding (a rank-0 stage that one rank thinks is done and another is
    about to build would leave the builder waiting forever at its final barrier)."""
    barrier()
    result = check()
    barrier()
    return result
