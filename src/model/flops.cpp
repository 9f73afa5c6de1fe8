#include "model/flops.h"

namespace longctx {

StepFlops step_flops(const LlamaConfig& c, int64_t B, int64_t T, bool recompute_blocks, int64_t suffix) {
  const double N = double(B) * double(T), C = double(c.hidden_size), F = double(c.intermediate_size);
  const double Cq = double(c.q_dim()), Ckv = double(c.kv_dim()), V = double(c.vocab_size);
  const double L = double(c.num_hidden_layers), S = double(suffix > 0 && suffix < T ? suffix : T);
  const double Ms = double(B) * S;  // rows past the last block's keys and values
  // per row: the K and V projections; the Q, output and MLP projections
  const double kv_mm = 2 * (2 * C * Ckv), rest_mm = 2 * (C * Cq + Cq * C + 3 * C * F);
  // QK^T and PV, each 2*HS per visible pair; causal: query T-S+i sees T-S+i+1 keys
  const double per_pair = 4.0 * double(B) * double(c.num_attention_heads) * double(c.head_dim);
  const double T_ = double(T);
  const double block_fwd = N * (kv_mm + rest_mm) + per_pair * T_ * (T_ + 1) / 2;
  const double last_fwd = N * kv_mm + Ms * rest_mm + per_pair * (S * (T_ - S) + S * (S + 1) / 2);
  const double head_fwd = 2 * Ms * C * V;
  StepFlops f;
  if (L == 0) {
    f.model = f.executed = 3 * 2 * N * C * V;
    return f;
  }
  f.model = 3 * ((L - 1) * block_fwd + last_fwd + head_fwd);  // backward ~ 2x forward
  // the last block is recomputed only when it runs whole (the suffix's rows are still there)
  f.executed = f.model + (recompute_blocks ? (L - 1) * block_fwd + (S < T_ ? 0 : last_fwd) : 0);
  return f;
}

}  // namespace longctx
