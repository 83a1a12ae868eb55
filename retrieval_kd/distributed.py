"""One sharding mechanism for every stage: torchrun's RANK/WORLD_SIZE (or an explicit ``I/N``).

Under ``torchrun --nproc-per-node N -m retrieval_kd ...`` each rank scores its own shard into
its own store writer, the Trainer runs data-parallel, and the stages that write one shared
artifact (mining, saving a student, indexing, evaluation) run on rank 0 while the others wait.
``rkd train --nproc N`` and ``rkd run --nproc N`` start that same launch themselves
(:func:`relaunch`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

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


def under_launcher() -> bool:
    """True inside a process that torchrun (or ``--nproc``) started."""
    return "TORCHELASTIC_RUN_ID" in os.environ or world()[1] > 1


def threads_per_rank(nproc: int, cores: int | None = None) -> int:
    """The CPU threads each of ``nproc`` ranks gets: the cores this process may use, split evenly
    (at least one), so the ranks together use every core without oversubscribing them.

    Example:
        >>> threads_per_rank(2, cores=16), threads_per_rank(4, cores=2)
        (8, 1)
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // nproc)


def without_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` and ``name=VALUE``.

    Example:
        >>> without_option(["train", "r.toml", "--nproc", "2", "-o", "x"], "--nproc")
        ['train', 'r.toml', '-o', 'x']
        >>> without_option(["run", "--nproc=4", "r.toml"], "--nproc")
        ['run', 'r.toml']
    """
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(f"{name}="):
            kept.append(arg)
    return kept


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Runs ``python -m retrieval_kd ARGV`` on ``nproc`` local processes with torch's own
    launcher (``torch.distributed.run``, the code behind ``torchrun --standalone``) and returns
    the exit status: 0, or the first failed rank's status (a negative signal number becomes
    128 + signal, as a shell reports it).

    Threads: unless the user fixed them (``rkd --threads N`` or ``OMP_NUM_THREADS``), each rank
    gets :func:`threads_per_rank` threads (torchrun alone would give each rank one).

    Raises:
        RkdError: ``nproc`` below 1, or this process already runs under torchrun.
    """
    from retrieval_kd.determinism import THREADS_ENV

    if nproc < 1:
        raise RkdError(f"--nproc {nproc}: need at least 1 process")
    if under_launcher():
        raise RkdError(
            f"--nproc {nproc}: this process already runs under torchrun (WORLD_SIZE={world()[1]}); "
            "drop --nproc or launch without torchrun"
        )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    saved = dict(os.environ)
    threads = os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS") or str(threads_per_rank(nproc))
    os.environ["OMP_NUM_THREADS"] = os.environ[THREADS_ENV] = threads
    try:
        torchrun(["--standalone", "--nproc-per-node", str(nproc), "-m", "retrieval_kd", *argv])
    except ChildFailedError as e:
        _, failure = e.get_first_failure()
        return failure.exitcode if failure.exitcode >= 0 else 128 - failure.exitcode
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 0
