// RMSNorm forward and backward: one block per row; the weight gradient in two
// deterministic stages (partial sums over row ranges, then a fixed-order sum).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int64_t kRowSplits = 64;  // row ranges of the weight gradient's first stage

__global__ void rmsnorm_fwd_kernel(float* out, float* rstd, const float* inp, const float* w, int64_t N,
                                   int64_t C, float eps) {
  __shared__ double sh[32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* x = inp + n * C;
    double ss = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += double(x[c]) * x[c];
    ss = block_sum_d(ss, sh);
    const float r = float(1.0 / sqrt(ss / double(C) + double(eps)));
    if (threadIdx.x == 0) rstd[n] = r;
    float* o = out + n * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) o[c] = x[c] * r * w[c];
  }
}

// dx = r * dy * w - x * r^3 / C * sum(dy * w * x); dinp may alias dout (each thread reads dy[c] before
// writing dx[c], and the row's sum is complete before any write)
__global__ void rmsnorm_bwd_kernel(float* dinp, const float* dout, const float* inp, const float* w,
                                   const float* rstd, int64_t N, int64_t C, bool accumulate) {
  __shared__ double sh[32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    const float r = rstd[n];
    double dot = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += double(dy[c]) * w[c] * x[c];
    dot = block_sum_d(dot, sh);
    const float k = float(dot * double(r) * r * r / double(C));
    float* dx = dinp + n * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float g = r * dy[c] * w[c] - x[c] * k;
      dx[c] = accumulate ? dx[c] + g : g;
    }
  }
}

// partial[s, c] = sum over rows of range s of dy * x * r (double)
__global__ void rmsnorm_dw_partial(double* partial, const float* dout, const float* inp, const float* rstd,
                                   int64_t N, int64_t C, int64_t rows_per_split) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t s = blockIdx.y;
  if (c >= C) return;
  const int64_t lo = s * rows_per_split, hi = min(N, lo + rows_per_split);
  double acc = 0;
  for (int64_t n = lo; n < hi; n++) acc += double(dout[n * C + c]) * inp[n * C + c] * rstd[n];
  partial[s * C + c] = acc;
}

__global__ void rmsnorm_dw_reduce(float* dw, const double* partial, int64_t splits, int64_t C) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double s = 0;
  for (int64_t i = 0; i < splits; i++) s += partial[i * C + c];
  dw[c] += float(s);
}
}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C,
                     float eps, void* s) {
  if (N <= 0) return;
  rmsnorm_fwd_kernel<<<grid_rows(N), kThreads, 0, as_stream(s)>>>(out, rstd, inp, w, N, C, eps);
  launch_check("rmsnorm_fwd_kernel");
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int64_t N, int64_t C, bool accumulate, void* s) {
  if (N <= 0 || C <= 0) return;
  cudaStream_t st = as_stream(s);
  if (dw) {  // before dinp: dinp may alias dout
    const int64_t splits = std::min<int64_t>(kRowSplits, N), per = (N + splits - 1) / splits;
    double* partial = nullptr;
    cuda_check(cudaMallocAsync(&partial, sizeof(double) * size_t(splits * C), st), "rmsnorm dw scratch");
    const dim3 grid(unsigned((C + kThreads - 1) / kThreads), unsigned(splits));
    rmsnorm_dw_partial<<<grid, kThreads, 0, st>>>(partial, dout, inp, rstd, N, C, per);
    launch_check("rmsnorm_dw_partial");
    rmsnorm_dw_reduce<<<unsigned((C + kThreads - 1) / kThreads), kThreads, 0, st>>>(dw, partial, splits, C);
    launch_check("rmsnorm_dw_reduce");
    cuda_check(cudaFreeAsync(partial, st), "rmsnorm dw scratch free");
  }
  rmsnorm_bwd_kernel<<<grid_rows(N), kThreads, 0, st>>>(dinp, dout, inp, w, rstd, N, C, accumulate);
  launch_check("rmsnorm_bwd_kernel");
}

}  // namespace longctx::cuda
