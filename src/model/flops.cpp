#include "model/flops.h"

namespace longctx {

StepFlops step_flops(const LlamaConfig& c, int64_t B, int64_t T, bool recompute_blocks) {
  const double N = double(B) * double(T), C = double(c.hidden_size), F = double(c.intermediate_size);
  const double Cq = double(c.q_dim()), Ckv = double(c.kv_dim()), V = double(c.vocab_size);
  const double L = double(c.num_hidden_layers);
  const double block_mm = 2 * N * (C * Cq + 2 * C * Ckv + Cq * C + 3 * C * F);
  // QK^T and PV, each 2*HS per visible pair; causal: T(T+1)/2 pairs per head
  const double attn =
      4.0 * double(B) * double(c.num_attention_heads) * double(c.head_dim) * double(T) * (double(T) + 1) / 2;
  const double block_fwd = block_mm + attn;
  const double head_fwd = 2 * N * C * V;
  StepFlops f;
  f.model = 3 * (L * block_fwd + head_fwd);  // backward ~ 2x forward
  f.executed = f.model + (recompute_blocks ? L * block_fwd : 0);
  return f;
}

}  // namespace longctx
