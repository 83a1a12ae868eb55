#!/usr/bin/env bash
# Source me: points ir_datasets at a private copy of the shared offline cache (ir_datasets writes
# its docstore beside source.zip, and ../shared is read-only), so `beir/scifact/...` ids work
# exactly as after a download.
_rkd_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export IR_DATASETS_HOME=${IR_DATASETS_HOME:-$_rkd_root/.cache/ir_datasets}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
_rkd_shared=${RKD_SHARED_DATA:-$_rkd_root/../shared/data}
if [ -d "$_rkd_shared/ir_datasets" ] && [ ! -f "$IR_DATASETS_HOME/beir/scifact/source.zip" ]; then
  mkdir -p "$IR_DATASETS_HOME"
  cp -r "$_rkd_shared/ir_datasets/." "$IR_DATASETS_HOME/"
fi
