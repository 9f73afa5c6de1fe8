#!/usr/bin/env bash
# gpu_check.sh part `cp-bench`: bench/bench_cp.py on the GPU, 2 and 4 ranks sharing it through MPI staged in
# pinned host memory: bytes each CP kind sends per step against plan's formula, per-rank GPU memory against
# `plan --ranks`, ZeRO's per-rank state, SeCO across ranks. Writes $OUT/cp_bench.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build-gpu}
PY=${PYTHON:-python3}
PYTHONUNBUFFERED=1 "$PY" bench/bench_cp.py --longctx "$BUILD_DIR/bin/longctx" --device cuda --comm mpi \
  --seq-len "${CP_BENCH_T:-4096}" --mpirun "${LCX_MPIRUN:-mpirun}" | tee "${OUT:-.}/cp_bench.txt"
