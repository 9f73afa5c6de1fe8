#include <cblas.h>

#include "kernels/cpu/cpu_kernels.h"

namespace longctx::cpu {

// Row-major throughout; weights are (OC, IC) as in nn.Linear.
void matmul_forward(float* out, const float* inp, const float* w, int64_t N, int64_t IC, int64_t OC,
                    bool accumulate) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(N), int(OC), int(IC), 1.f, inp, int(IC), w,
              int(IC), accumulate ? 1.f : 0.f, out, int(OC));
}

void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate) {
  if (dinp)  // (N, IC) = dout (N, OC) @ w (OC, IC)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(N), int(IC), int(OC), 1.f, dout, int(OC), w,
                int(IC), accumulate ? 1.f : 0.f, dinp, int(IC));
  if (dw)  // (OC, IC) += dout^T (OC, N) @ inp (N, IC)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(OC), int(IC), int(N), 1.f, dout, int(OC), inp,
                int(IC), 1.f, dw, int(IC));
}

}  // namespace longctx::cpu
