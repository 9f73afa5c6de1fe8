#!/bin/bash
cd "$(dirname "$0")"
source <(sed -n '/^run_mutant() {/,/^}/p' mutants.sh)
S=../../src/kernels/cuda
for m in "sum_sync1 common.cuh:49" "sum_sync2 common.cuh:51" "max_sync1 common.cuh:58" "max_sync2 common.cuh:60" "sumd_sync1 common.cuh:67" "sumd_sync2 common.cuh:69"; do
  set -- $m; run_mutant b_$1 block_reduce --drop $2
done
