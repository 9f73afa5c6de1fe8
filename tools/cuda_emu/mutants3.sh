#!/bin/bash
# attention.cu mutants (the window, the GQA head, document ids, the row stride) and elementwise.cu ones
# (bias_grad barrier and column guard, bias_add column, bf16 rounding): the harness must catch each.
cd "$(dirname "$0")"
S=../../src/kernels/cuda
source <(sed -n '/^run_mutant() {/,/^}/p' mutants.sh)
run_mutant a_kbegin  attention --sub attention.cu:65 "m.window + 1" "m.window"
run_mutant a_qend    attention --sub attention.cu:72 "j - m.q_offset + m.window" "j - m.q_offset + m.window + 1"
run_mutant a_nowin   attention --sub attention.cu:205 "query_end(d, m, j)" "d.Tq"
run_mutant a_dqwin   attention --sub attention.cu:167 "key_begin(d, m, i), jend" "0, jend"
run_mutant a_gqa     attention --sub attention.cu:115 "h / G) * d.HS" "h % d.NKV) * d.HS"
run_mutant a_doc     attention --drop attention.cu:207
run_mutant a_stride  attention --sub attention.cu:196 "r += row_stride()" "r += 2 * row_stride()"
# elementwise.cu: the linear bias and the bf16 conversion (bias, convert groups)
run_mutant b_sync    bias --drop elementwise.cu:82
run_mutant b_guard   bias --sub elementwise.cu:83 "w == 0 && c < C" "w == 0"
run_mutant b_addcol  bias --sub elementwise.cu:65 "b[i % C]" "b[i / N]"
run_mutant cvt_rz    convert --sub elementwise.cu:30 "__float2bfloat16_rn" "__float2bfloat16_rz"
