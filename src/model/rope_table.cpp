#include "model/rope_table.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace longctx {

namespace {

// YaRN (transformers 5's _compute_yarn_parameters): frequencies that turn
// fewer than beta_slow times over the original context are interpolated
// (divided by factor), those that turn more than beta_fast times are kept,
// with a linear ramp over the dimensions in between.
std::vector<double> yarn_inv_freq(const LlamaConfig& c, std::vector<double> f) {
  const RopeScaling& s = c.rope_scaling;
  const double dim = double(c.head_dim), base = c.rope_theta;
  const double ctx = double(s.original_max_position_embeddings);
  // the dimension at which a frequency turns `rotations` times over the original context
  auto correction_dim = [&](double rotations) {
    return dim * std::log(ctx / (rotations * 2 * M_PI)) / (2 * std::log(base));
  };
  double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
  if (s.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0), high = std::min(high, dim - 1);
  if (low == high) high += 0.001;  // no zero-width ramp
  for (size_t i = 0; i < f.size(); i++) {
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    const double keep = 1 - ramp;  // share of the unscaled (extrapolated) frequency
    f[i] = f[i] / s.factor * (1 - keep) + f[i] * keep;
  }
  return f;
}

double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

}  // namespace

double rope_attention_scale(const LlamaConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  if (s.type != "yarn") return 1.0;
  if (s.attention_factor > 0) return s.attention_factor;
  if (s.mscale > 0 && s.mscale_all_dim > 0)
    return yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim);
  return yarn_mscale(s.factor, 1.0);
}

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
  if (s.type == "yarn") return yarn_inv_freq(c, f);
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
  const double m = rope_attention_scale(c);
  const int64_t half = int64_t(f.size());
#pragma omp parallel for schedule(static) if (n * half > (1 << 15))
  for (int64_t p = 0; p < n; p++)
    for (int64_t i = 0; i < half; i++) {
      const double a = double(pos ? pos[p] : p) * f[size_t(i)];
      cos[p * half + i] = float(m * std::cos(a));
      sin[p * half + i] = float(m * std::sin(a));
    }
}

}  // namespace longctx
