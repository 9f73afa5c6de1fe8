#include "model/flops.h"

namespace longctx {

double attention_pairs(int64_t q_offset, int64_t Tq, int64_t window) {
  // keys seen by the queries at positions [0, n): query p sees min(p + 1, window)
  auto upto = [&](double n) {
    const double W = double(window);
    if (window <= 0 || n <= W) return n * (n + 1) / 2;
    return W * (W + 1) / 2 + (n - W) * W;
  };
  return upto(double(q_offset + Tq)) - upto(double(q_offset));
}

StepFlops step_flops(const LlamaConfig& c, int64_t B, int64_t T, bool recompute_blocks, int64_t suffix) {
  const double N = double(B) * double(T), C = double(c.hidden_size), F = double(c.intermediate_size);
  const double Cq = double(c.q_dim()), Ckv = double(c.kv_dim()), V = double(c.vocab_size);
  const int64_t L = c.num_hidden_layers, Sr = suffix > 0 && suffix < T ? suffix : T;
  const double S = double(Sr), Ms = double(B) * S;  // rows past the last block's keys and values
  // per row: the K and V projections; the Q, output and MLP projections
  const double kv_mm = 2 * (2 * C * Ckv), rest_mm = 2 * (C * Cq + Cq * C + 3 * C * F);
  // QK^T and PV, each 2*HS per visible pair; causal: query T-S+i sees T-S+i+1 keys (or its window)
  const double per_pair = 4.0 * double(B) * double(c.num_attention_heads) * double(c.head_dim);
  auto block_fwd = [&](int64_t l) {
    return N * (kv_mm + rest_mm) + per_pair * attention_pairs(0, T, c.window(l));
  };
  const double head_fwd = 2 * Ms * C * V;
  StepFlops f;
  if (L == 0) {
    f.model = f.executed = 3 * 2 * N * C * V;
    return f;
  }
  const double last_fwd = N * kv_mm + Ms * rest_mm + per_pair * attention_pairs(T - Sr, Sr, c.window(L - 1));
  double blocks = 0;  // every block but the last
  for (int64_t l = 0; l + 1 < L; l++) blocks += block_fwd(l);
  f.model = 3 * (blocks + last_fwd + head_fwd);  // backward ~ 2x forward
  // the last block is recomputed only when it runs whole (the suffix's rows are still there)
  f.executed = f.model + (recompute_blocks ? blocks + (Sr < T ? 0 : last_fwd) : 0);
  return f;
}

}  // namespace longctx
