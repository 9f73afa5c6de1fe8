#!/usr/bin/env bash
# gpu_check.sh part `ranks`: 2 and 4 ranks sharing the one GPU through MPI staged in pinned host memory,
# every CP kind with and without ZeRO-3 against the one-rank GPU step; comm-check --staged on GPU memory;
# NCCL on one rank, and two NCCL ranks posing as two hosts (reported only). Writes $OUT/ranks.json
# (docs/gpu/ranks.json's shape).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build-gpu}
PY=${PYTHON:-python3}
PYTHONUNBUFFERED=1 "$PY" tests/gpu/ranks_parity.py --longctx "$BUILD_DIR/bin/longctx" \
  --mpirun "${LCX_MPIRUN:-mpirun}" --json "${OUT:-.}/ranks.json" --commit "${LCX_COMMIT:-unknown}"
