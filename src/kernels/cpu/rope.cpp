#include "kernels/cpu/cpu_kernels.h"

namespace longctx::cpu {

// Rotate-half: the pair (x[i], x[i + HS/2]) turns by angle a_i:
//   y[i] = x[i] cos - x[i+h] sin,  y[i+h] = x[i+h] cos + x[i] sin.
// The backward is the rotation by -a (sign = -1). out may alias inp.
void rope_apply(float* out, const float* inp, const int32_t* pos, const float* cos, const float* sin,
                int64_t N, int64_t H, int64_t HS, float sign) {
  const int64_t half = HS / 2;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* c = cos + int64_t(pos[n]) * half;
    const float* s = sin + int64_t(pos[n]) * half;
    for (int64_t h = 0; h < H; h++) {
      const float* x = inp + (n * H + h) * HS;
      float* y = out + (n * H + h) * HS;
      for (int64_t i = 0; i < half; i++) {
        const float a = x[i], b = x[i + half], si = sign * s[i];
        y[i] = a * c[i] - b * si;
        y[i + half] = b * c[i] + a * si;
      }
    }
  }
}

}  // namespace longctx::cpu
