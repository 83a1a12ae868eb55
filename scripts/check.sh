#!/usr/bin/env bash
# Sets up and runs every check CI runs: ruff (lint + format), mypy (strict, on the installed
# package so teachers/, indexes/ and eval/ are checked under their retrieval_kd.* names), pytest.
# Extra arguments go to pytest, e.g. `bash scripts/check.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# shellcheck disable=SC1091
. scripts/data.sh
ruff check .
ruff format --check .
typecheck=$(mktemp -d)
trap 'rm -rf "$typecheck"' EXIT
python -m pip install -q --no-deps --no-build-isolation --target "$typecheck" . 2>/dev/null
(cd "$typecheck" && mypy -p retrieval_kd --config-file "$OLDPWD/pyproject.toml")
python -m pytest "$@"
