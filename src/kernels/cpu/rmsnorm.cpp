#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace longctx::cpu {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C,
                     float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* x = inp + n * C;
    double ss = 0;
    for (int64_t c = 0; c < C; c++) ss += double(x[c]) * x[c];
    const float r = float(1.0 / std::sqrt(ss / double(C) + double(eps)));
    rstd[n] = r;
    float* o = out + n * C;
    for (int64_t c = 0; c < C; c++) o[c] = x[c] * r * w[c];
  }
}

// y = x * r * w, r = (mean(x^2) + eps)^-1/2
// dx = r * (dy*w) - x * r^3 / C * sum(dy * w * x);  dw += sum_n dy * x * r
// dw is reduced per thread, then summed in a fixed order (deterministic).
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int64_t N, int64_t C, bool accumulate) {
  const int nt = omp_get_max_threads();
  std::vector<double> part(size_t(nt) * size_t(C), 0.0);
#pragma omp parallel num_threads(nt)
  {
    double* pw = part.data() + size_t(omp_get_thread_num()) * size_t(C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      const float r = rstd[n];
      double dot = 0;
      for (int64_t c = 0; c < C; c++) dot += double(dy[c]) * w[c] * x[c];
      const float k = float(dot * double(r) * r * r / double(C));
      float* dx = dinp + n * C;
      for (int64_t c = 0; c < C; c++) {  // dy[c] read before dx[c] is written: dinp may alias dout
        const float d = dy[c], g = r * d * w[c] - x[c] * k;
        pw[c] += double(d) * x[c] * r;
        dx[c] = accumulate ? dx[c] + g : g;
      }
    }
  }
  if (!dw) return;
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int t = 0; t < nt; t++) s += part[size_t(t) * size_t(C) + size_t(c)];
    dw[c] += float(s);
  }
}

}  // namespace longctx::cpu
