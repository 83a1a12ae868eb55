#!/usr/bin/env bash
# Sets up and runs the main job: distil all-MiniLM-L6-v2 into its first 3 layers on SciFact
# (offline), then prints the teacher / student-before / student-after table and report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
# shellcheck disable=SC1091
. scripts/data.sh
rkd run "${1:-configs/scifact-dense-distill.toml}" --out "${2:-runs/scifact-dense}"
