// Linear layers through cuBLASLt. Row-major (N, IC) activations and (OC, IC)
// weights are column-major transposes of themselves, so each product is
// written as its transpose: out^T (OC, N) = w^T' ... (see each call).
// fp32 in and out with CUBLAS_COMPUTE_32F: TF32 stays off, so results match
// the CPU backend to fp32 rounding.
#include <cublasLt.h>

#include <mutex>
#include <utility>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {

namespace {

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) FAIL("[cuda] cuBLASLt ", what, " failed with status ", int(s));
}

// One handle and one workspace for the process (the backend runs one device).
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
struct Lt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};
Lt& lt() {
  static Lt l;
  static std::once_flag once;
  std::call_once(once, [] {
    lt_check(cublasLtCreate(&l.handle), "create");
    cuda_check(cudaMalloc(&l.workspace, kWorkspaceBytes), "cuBLASLt workspace");
  });
  return l;
}

// C (m, n) = alpha * op(A) op(B) + beta * C, all column-major fp32; A stored (ta ? k x m : m x k), etc.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc, bool bf16, cudaStream_t st, const char* what) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // an empty sum: C = beta * C
    if (beta == 0.f) {
      for (int64_t j = 0; j < n; j++)
        cuda_check(cudaMemsetAsync(C + j * ldc, 0, sizeof(float) * size_t(m), st), what);
    }
    return;
  }
  Lt& l = lt();
  // descriptors freed on every path, the failing ones included
  struct Descs {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~Descs() {
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (lc) cublasLtMatrixLayoutDestroy(lc);
      if (lb) cublasLtMatrixLayoutDestroy(lb);
      if (la) cublasLtMatrixLayoutDestroy(la);
      if (desc) cublasLtMatmulDescDestroy(desc);
    }
  } d;
  const cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
  lt_check(cublasLtMatmulDescCreate(&d.desc, compute, CUDA_R_32F), what);
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  lt_check(cublasLtMatmulDescSetAttribute(d.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)), what);
  lt_check(cublasLtMatmulDescSetAttribute(d.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)), what);
  lt_check(cublasLtMatrixLayoutCreate(&d.la, CUDA_R_32F, ta ? k : m, ta ? m : k, lda), what);
  lt_check(cublasLtMatrixLayoutCreate(&d.lb, CUDA_R_32F, tb ? n : k, tb ? k : n, ldb), what);
  lt_check(cublasLtMatrixLayoutCreate(&d.lc, CUDA_R_32F, m, n, ldc), what);
  lt_check(cublasLtMatmulPreferenceCreate(&d.pref), what);
  size_t ws = kWorkspaceBytes;
  lt_check(
      cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
      what);
  // Our operands are views (rows of a tile, parameters padded to 64 bytes), not always 256-byte aligned as
  // the heuristic assumes by default: tell it each pointer's alignment.
  const auto align = [](const void* p) {
    uint32_t r = 256;
    while (r > 4 && reinterpret_cast<uintptr_t>(p) % r != 0) r /= 2;
    return r;
  };
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> al[4] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align(A)},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align(B)},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align(C)},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align(C)}};
  for (const auto& [attr, bytes] : al)
    lt_check(cublasLtMatmulPreferenceSetAttribute(d.pref, attr, &bytes, sizeof(bytes)), what);
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  lt_check(cublasLtMatmulAlgoGetHeuristic(l.handle, d.desc, d.la, d.lb, d.lc, d.lc, d.pref, 1, &heur, &found),
           what);
  if (found == 0) FAIL("[cuda] cuBLASLt has no algorithm for ", what, " (", m, " x ", n, " x ", k, ")");
  const float alpha = 1.f;
  lt_check(cublasLtMatmul(l.handle, d.desc, &alpha, A, d.la, B, d.lb, &beta, C, d.lc, C, d.lc, &heur.algo,
                          l.workspace, kWorkspaceBytes, st),
           what);
}

}  // namespace

void matmul_forward(float* out, const float* inp, const float* w, int64_t N, int64_t IC, int64_t OC,
                    bool accumulate, bool bf16, void* s) {
  // out^T (OC, N) = w (OC, IC) [stored as IC x OC, transposed] @ inp^T (IC, N)
  gemm(true, false, OC, N, IC, w, IC, inp, IC, accumulate ? 1.f : 0.f, out, OC, bf16, as_stream(s), "matmul");
}

void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate, bool bf16, void* s) {
  if (dinp)  // dinp^T (IC, N) = w^T (IC, OC) @ dout^T (OC, N)
    gemm(false, false, IC, N, OC, w, IC, dout, OC, accumulate ? 1.f : 0.f, dinp, IC, bf16, as_stream(s),
         "matmul_backward dinp");
  if (dw)  // dw^T (IC, OC) += inp^T (IC, N) @ dout (N, OC) [dout^T stored as OC x N, transposed]
    gemm(false, true, IC, OC, N, inp, IC, dout, OC, 1.f, dw, IC, bf16, as_stream(s),
         "matmul_backward dweight");
}

}  // namespace longctx::cuda
