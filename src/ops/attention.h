// Flash attention: tiles of Q against tiles of K/V with an online softmax.
// Keeps only the output and the log-sum-exp; the backward pass recomputes the
// scores tile by tile, so memory is O(T), never T x T.
#pragma once
#include "core/context.h"

namespace longctx {

struct AttentionParams {
  int64_t q_offset = 0;  // absolute position of query row 0 (keys start at 0)
  bool causal = true;    // key j is visible to query i iff j <= q_offset + i
  float scale = 0.f;     // 0: 1/sqrt(HS)
  // > 0: sliding window, key j is visible to query i only if j > q_offset + i - window (Mistral, Qwen2's
  // sliding layers); with causal, the last `window` positions up to the query's own.
  int64_t window = 0;
  // Optional document ids for packed sequences, I32: q_doc (B, Tq), k_doc (B, Tk).
  // When set, query i sees key j only if their ids are equal.
  Tensor q_doc, k_doc;
};

// out (B, Tq, NH, HS), lse (B, NH, Tq) F32
// q (B, Tq, NH, HS), k, v (B, Tk, NKV, HS); NH % NKV == 0 (GQA / MQA).
// A query that sees no key gets out = 0 and lse = -inf.
void attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, const AttentionParams& p,
                       Context& ctx);

// dq (B, Tq, NH, HS) =, dk, dv (B, Tk, NKV, HS) = ; out and lse from forward.
void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                        Tensor out, Tensor lse, const AttentionParams& p, Context& ctx);

// out, lse := attention over the union of two key sets, from each part's
// output and log-sum-exp (fp32): out (B, Tq, NH, HS), lse (B, NH, Tq);
// part_out, part_lse the same shapes. A row that sees no key in a part has lse -inf.
void attention_merge(Tensor out, Tensor lse, Tensor part_out, Tensor part_lse, Context& ctx);

// How many attention calls (forward or backward) cuDNN's fused kernels ran in this process (bf16 math on
// the GPU); the rest ran our own kernels.
int64_t attention_cudnn_runs();

// Scratch the kernels take from ctx.mem (tag workspace) for these sizes.
size_t attention_workspace_bytes(int64_t B, int64_t Tq, int64_t Tk, int64_t NH, int64_t NKV, int64_t HS);

}  // namespace longctx
