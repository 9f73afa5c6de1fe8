#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace longctx::cpu {

namespace {

// One row of logits becomes, in place, scale * (softmax - onehot(target));
// returns -log softmax[target]. Ignored rows become zeros and return 0.
double softmax_xent_row(float* z, int64_t V, int32_t target, double scale, bool want_grad) {
  if (target < 0) {
    if (want_grad) std::fill(z, z + V, 0.f);
    return 0.0;
  }
  float mx = z[0];
  for (int64_t i = 1; i < V; i++) mx = std::max(mx, z[i]);
  double sum = 0;
  for (int64_t i = 0; i < V; i++) sum += std::exp(double(z[i] - mx));
  const double lse = double(mx) + std::log(sum);
  const double loss = lse - double(z[target]);
  if (want_grad) {
    for (int64_t i = 0; i < V; i++) z[i] = float(std::exp(double(z[i]) - lse) * scale);
    z[target] -= float(scale);
  }
  return loss;
}

}  // namespace

double lm_head_loss(float* dhidden, float* dw, const float* hidden, const float* w, const int32_t* targets,
                    int64_t N, int64_t C, int64_t V, double scale, int64_t tile, float* logits,
                    double* row_loss) {
  const bool want_grad = dhidden || dw;
  double total = 0;
  for (int64_t r0 = 0; r0 < N; r0 += tile) {
    const int64_t rows = std::min(tile, N - r0);
    const float* h = hidden + r0 * C;  // (rows, C)
    // logits (rows, V) = h @ w^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(V), int(C), 1.f, h, int(C), w, int(C),
                0.f, logits, int(V));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
      row_loss[r] = softmax_xent_row(logits + r * V, V, targets[r0 + r], scale, want_grad);
    for (int64_t r = 0; r < rows; r++) total += row_loss[r];  // fixed order: deterministic
    if (dhidden)                                              // (rows, C) = dlogits (rows, V) @ w (V, C)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(C), int(V), 1.f, logits, int(V),
                  w, int(C), 0.f, dhidden + r0 * C, int(C));
    if (dw)  // (V, C) += dlogits^T (V, rows) @ h (rows, C)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(V), int(C), int(rows), 1.f, logits, int(V), h,
                  int(C), 1.f, dw, int(C));
  }
  return total * scale;
}

}  // namespace longctx::cpu
