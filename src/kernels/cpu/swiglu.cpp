#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace longctx::cpu {

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float g = gate[i];
    out[i] = g / (1.f + std::exp(-g)) * up[i];
  }
}

// silu(g) = g s, s = sigmoid(g); silu'(g) = s (1 + g (1 - s)). In-place safe.
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float g = gate[i], u = up[i], d = dout[i];
    const float s = 1.f / (1.f + std::exp(-g));
    dup[i] = d * g * s;
    dgate[i] = d * u * s * (1.f + g * (1.f - s));
  }
}

}  // namespace longctx::cpu
