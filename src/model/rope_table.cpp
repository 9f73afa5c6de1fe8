#include "model/rope_table.h"

#include <cmath>

#include "core/check.h"

namespace longctx {

std::vector<double> rope_inv_freq(const LlamaConfig& c) {
  const int64_t HS = c.head_dim, half = HS / 2;
  std::vector<double> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; i++) f[size_t(i)] = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(HS));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "default") return f;
  if (s.type == "linear") {
    for (auto& x : f) x /= s.factor;
    return f;
  }
  CHECK(s.type == "llama3", "unsupported rope scaling '", s.type, "'");
  // Llama 3: long wavelengths slowed by `factor`, short ones kept, a smooth
  // blend between the two cut-offs.
  const double old_ctx = double(s.original_max_position_embeddings);
  const double low_wavelen = old_ctx / s.low_freq_factor, high_wavelen = old_ctx / s.high_freq_factor;
  for (auto& x : f) {
    const double wavelen = 2 * M_PI / x;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      x /= s.factor;
      continue;
    }
    const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    x = (1 - smooth) * x / s.factor + smooth * x;
  }
  return f;
}

void rope_tables(const LlamaConfig& c, int64_t P, float* cos, float* sin) {
  rope_rows(c, nullptr, P, cos, sin);
}

void rope_rows(const LlamaConfig& c, const int32_t* pos, int64_t n, float* cos, float* sin) {
  const std::vector<double> f = rope_inv_freq(c);
  const int64_t half = int64_t(f.size());
#pragma omp parallel for schedule(static) if (n * half > (1 << 15))
  for (int64_t p = 0; p < n; p++)
    for (int64_t i = 0; i < half; i++) {
      const double a = double(pos ? pos[p] : p) * f[size_t(i)];
      cos[p * half + i] = float(std::cos(a));
      sin[p * half + i] = float(std::sin(a));
    }
}

}  // namespace longctx
