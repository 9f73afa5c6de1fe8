#!/bin/bash
# Each mutant: a plausible bug put into a copy; the harness must fail on it (policies 1, 2, 3).
cd "$(dirname "$0")"
S=../../src/kernels/cuda
run_mutant() {  # name tests gen-args...
  local name=$1 tests=$2; shift 2
  rm -rf gen_$name; python3 gen.py $S gen_$name "$@" 2>&1 | sed "s/^/[$name] /"
  ./build.sh m_$name gen_$name > build_$name.log 2>&1 || { echo "[$name] BUILD FAILED"; return; }
  local res=""
  for p in 1 2 3; do
    EMU_POLICY=$p timeout 600 ./m_$name $tests > mut_${name}_p$p.log 2>&1; rc=$?
    res="$res p$p:$( [ $rc = 0 ] && echo survived || echo caught)"
  done
  echo "[$name] $res  ($(grep -h -m1 'FAIL\|EMU ERROR' mut_${name}_p*.log | head -1 | cut -c1-150))"
  rm -f m_$name; rm -rf obj/m_$name
}
run_mutant sum_sync1  block_reduce,elementwise,rmsnorm,lm_head --drop common.cuh:49
run_mutant sum_sync2  block_reduce,elementwise,rmsnorm,lm_head --drop common.cuh:51
run_mutant max_sync1  block_reduce,lm_head --drop common.cuh:58
run_mutant max_sync2  block_reduce,lm_head --drop common.cuh:60
run_mutant sumd_sync1 block_reduce,elementwise,rmsnorm,lm_head --drop common.cuh:67
run_mutant sumd_sync2 block_reduce,elementwise,rmsnorm,lm_head --drop common.cuh:69
run_mutant xent_sync  lm_head --drop lm_head_loss.cu:39
run_mutant rope_alias rope --sub rope.cu:22 "b * c + a * si" "b * c + x[i] * si"
run_mutant gridstride elementwise --sub elementwise.cu:18 "int64_t(gridDim.x) * blockDim.x" "blockDim.x"
run_mutant rowstride  rmsnorm --sub rmsnorm.cu:15 "n < N;" "n < N && n < gridDim.x;"
run_mutant mm_fwd_t   matmul,lm_head --sub matmul.cu:85 "gemm(true, false, OC, N, IC, w, IC," "gemm(false, false, OC, N, IC, w, OC,"
run_mutant mm_dw_ld   matmul,lm_head --sub matmul.cu:94 "inp, IC, dout, OC," "inp, IC, dout, N,"
