#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace longctx::cpu {

void embedding_forward(float* out, const int32_t* tok, const float* wte, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) std::memcpy(out + n * C, wte + int64_t(tok[n]) * C, size_t(C) * 4);
}

// Parallel over columns so that two rows with the same token never race.
void embedding_backward(float* dwte, const float* dout, const int32_t* tok, int64_t N, int64_t C) {
  const int64_t kCols = 64;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += kCols) {
    const int64_t c1 = c0 + kCols < C ? c0 + kCols : C;
    for (int64_t n = 0; n < N; n++) {
      float* d = dwte + int64_t(tok[n]) * C;
      const float* s = dout + n * C;
      for (int64_t c = c0; c < c1; c++) d[c] += s[c];
    }
  }
}

}  // namespace longctx::cpu
