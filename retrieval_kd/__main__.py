"""``python -m retrieval_kd``: the ``rkd`` CLI, for launchers that take a module
(``torchrun --nproc-per-node 2 -m retrieval_kd score-teacher ...``)."""

from retrieval_kd.cli import main

if __name__ == "__main__":
    main()
