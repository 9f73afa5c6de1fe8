#!/usr/bin/env bash
# gpu_check.sh part `step-bench`: one training step of a Llama-3.2-1B shape, longctx (bf16 math, --plan auto)
# beside Hugging Face (bf16, SDPA, gradient checkpointing) at T = 16K and 32K (STEP_T to change).
# Writes $OUT/step.json (a list of rows: T, plan, longctx_tok_s, mfu, hf_tok_s, longctx_peak_gib, hf_peak_gib).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
BUILD_DIR=${BUILD_DIR:-build-gpu}
PYTHONUNBUFFERED=1 "${PYTHON:-python3}" bench/gpu_step.py --longctx "$BUILD_DIR/bin/longctx" \
  --T "${STEP_T:-16384,32768}" --json "${OUT:-.}/step-rows.json"
