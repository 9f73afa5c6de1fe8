#!/usr/bin/env bash
# gpu_check.sh part `long`: bench/gpu_long.py, the longest sequence per model with --plan auto (probe and a
# full step), Hugging Face's longest beside it. Long: a session of its own. Writes $OUT/long.json
# (docs/gpu/long.json's shape). LONG_MODELS (default 1b,8b-lora,8b-full), LONG_HOST_MEM (default 100GiB).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build-gpu}
PY=${PYTHON:-python3}
PYTHONUNBUFFERED=1 "$PY" bench/gpu_long.py --longctx "$BUILD_DIR/bin/longctx" --models "${LONG_MODELS:-1b,8b-lora,8b-full}" \
  --host-mem "${LONG_HOST_MEM:-100GiB}" --json "${OUT:-.}/long.json" --commit "${LCX_COMMIT:-unknown}"
