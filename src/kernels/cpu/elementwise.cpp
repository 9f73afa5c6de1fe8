#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace longctx::cpu {

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

double sum_squares(const float* x, int64_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++) s += double(x[i]) * x[i];
  return s;
}

void scale(float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) x[i] *= s;
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                  float eps, float wd, int64_t step) {
  const double bc1 = 1.0 - std::pow(double(b1), double(step));
  const double bc2 = 1.0 - std::pow(double(b2), double(step));
  const float step_size = float(double(lr) / bc1);
  const float rbc2 = float(1.0 / std::sqrt(bc2));
  const float decay = 1.f - lr * wd;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i];
    m[i] = b1 * m[i] + (1.f - b1) * gi;
    v[i] = b2 * v[i] + (1.f - b2) * gi * gi;
    p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * rbc2 + eps);
  }
}

void bias_add(float* y, const float* b, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > (1 << 15))
  for (int64_t n = 0; n < N; n++) {
    float* r = y + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) r[c] += b[c];
  }
}

void bias_grad(float* db, const float* dy, int64_t N, int64_t C) {
  const int nt = N * C > (1 << 15) ? omp_get_max_threads() : 1;
  std::vector<double> part(size_t(nt) * size_t(C), 0.0);
#pragma omp parallel num_threads(nt)
  {
    double* p = part.data() + size_t(omp_get_thread_num()) * size_t(C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      const float* r = dy + n * C;
      for (int64_t c = 0; c < C; c++) p[c] += r[c];
    }
  }
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int t = 0; t < nt; t++) s += part[size_t(t) * size_t(C) + size_t(c)];
    db[c] += float(s);
  }
}

}  // namespace longctx::cpu
