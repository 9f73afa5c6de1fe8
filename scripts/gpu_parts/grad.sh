#!/usr/bin/env bash
# gpu_check.sh part `grad`: the whole model's gradients on the GPU against the CPU backend (every
# single-device plan) and Hugging Face. Writes $OUT/grad.json.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build-gpu}
PY=${PYTHON:-python3}
PYTHONUNBUFFERED=1 "$PY" tests/gpu/grad_parity.py --longctx "$BUILD_DIR/bin/longctx" --json "${OUT:-.}/grad.json"
