// CPU flash attention (fp32, OpenMP). Raw pointers and sizes: shapes were
// validated by the op layer (src/ops/attention.cpp) before these are called.
#pragma once
#include <cstddef>
#include <cstdint>

namespace longctx::cpu {

struct AttentionDims {
  int64_t B = 0, Tq = 0, Tk = 0, NH = 0, NKV = 0, HS = 0;  // NH % NKV == 0
};

// Which keys a query sees: key j (position j) is visible to query i (position
// q_offset + i) iff (!causal || j <= q_offset + i), (window == 0 || j >
// q_offset + i - window) and, when the doc arrays are given, q_doc[b, i] == k_doc[b, j].
struct AttentionMask {
  int64_t q_offset = 0;
  bool causal = true;
  int64_t window = 0;              // > 0: a sliding window of that many keys ending at the query
  const int32_t* q_doc = nullptr;  // (B, Tq) or null
  const int32_t* k_doc = nullptr;  // (B, Tk) or null
};

// out (B, Tq, NH, HS), lse (B, NH, Tq): natural log-sum-exp of the scaled scores.
// q (B, Tq, NH, HS); k, v (B, Tk, NKV, HS); query head h uses kv head h / (NH / NKV).
// A query that sees no key gets out = 0 and lse = -inf.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionDims& d, const AttentionMask& m, float scale);

// dq (B, Tq, NH, HS) =, dk, dv (B, Tk, NKV, HS) = ; out and lse from attention_forward.
// workspace: attention_backward_workspace_floats(d) floats (per-row statistics, O(T)).
// Deterministic: the result does not depend on the thread count.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, float* workspace,
                        const AttentionDims& d, const AttentionMask& m, float scale);
size_t attention_backward_workspace_floats(const AttentionDims& d);

}  // namespace longctx::cpu
