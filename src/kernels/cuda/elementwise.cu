// Elementwise kernels: add, scale, axpy, fill, the bias of a linear layer, SwiGLU, AdamW, and the
// deterministic sum of squares behind the global gradient norm.
#include <cuda_bf16.h>

#include <cmath>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {

namespace {
constexpr int kThreads = 256;

#define GRID_STRIDE(i, n)                                                   \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
__global__ void scale_kernel(float* x, float s, int64_t n) { GRID_STRIDE(i, n) x[i] *= s; }
__global__ void axpy_kernel(float* y, float a, const float* x, int64_t n) {
  GRID_STRIDE(i, n) y[i] += a * x[i];
}
__global__ void fill_kernel(float* x, float v, int64_t n) { GRID_STRIDE(i, n) x[i] = v; }

__global__ void to_bf16_kernel(__nv_bfloat16* dst, const float* src, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}
__global__ void from_bf16_kernel(float* dst, const __nv_bfloat16* src, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = __bfloat162float(src[i]);
}

// silu(g) * u; the CPU kernel's formula, so that the two agree to rounding
__device__ inline float silu(float g) { return g / (1.f + expf(-g)); }

__global__ void swiglu_fwd_kernel(float* out, const float* gate, const float* up, int64_t n) {
  GRID_STRIDE(i, n) out[i] = silu(gate[i]) * up[i];
}
__global__ void swiglu_bwd_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                  const float* up, int64_t n) {
  GRID_STRIDE(i, n) {
    const float g = gate[i], u = up[i], d = dout[i];
    const float sig = 1.f / (1.f + expf(-g));
    dup[i] = d * g * sig;
    dgate[i] = d * u * sig * (1.f + g * (1.f - sig));
  }
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2,
                             float eps, float decay, float step_size, float rbc2) {
  GRID_STRIDE(i, n) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.f - b1) * gi;
    const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi, v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * rbc2 + eps);
  }
}

// y (N, C) += b (C) on every row
__global__ void bias_add_kernel(float* y, const float* b, int64_t N, int64_t C) {
  GRID_STRIDE(i, N * C) y[i] += b[i % C];
}

// db (C) += the column sums of dy (N, C), in double and in a fixed order (deterministic, no scratch): a
// block of kBiasWarps warps per 32 columns; lane l of warp w sums rows w, w + kBiasWarps, ... of column
// c0 + l (a warp reads 32 neighbouring floats of a row at a time); warp 0 then adds the kBiasWarps partial
// sums in warp order.
constexpr int kBiasWarps = 32;
__global__ void __launch_bounds__(kBiasWarps * 32)
    bias_grad_kernel(float* db, const float* dy, int64_t N, int64_t C) {
  __shared__ double part[kBiasWarps][32];
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  const int64_t c = int64_t(blockIdx.x) * 32 + lane;
  double acc = 0;
  if (c < C)
    for (int64_t n = w; n < N; n += kBiasWarps) acc += dy[n * C + c];
  part[w][lane] = acc;
  __syncthreads();
  if (w == 0 && c < C) {
    double sum = 0;
    for (int k = 0; k < kBiasWarps; k++) sum += part[k][lane];
    db[c] += float(sum);
  }
}

// Stage 1: each block sums a contiguous range in double; stage 2 on the host in block order.
constexpr int kSumBlocks = 1024;
__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n, int64_t per_block) {
  __shared__ double sh[32];
  const int64_t lo = blockIdx.x * per_block, hi = min(n, lo + per_block);
  double s = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) s += double(x[i]) * x[i];
  s = block_sum_d(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
}  // namespace

void add(float* out, const float* a, const float* b, int64_t n, void* s) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(out, a, b, n);
  launch_check("add_kernel");
}
void scale(float* x, float v, int64_t n, void* s) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(x, v, n);
  launch_check("scale_kernel");
}
void axpy(float* y, float a, const float* x, int64_t n, void* s) {
  if (n <= 0) return;
  axpy_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(y, a, x, n);
  launch_check("axpy_kernel");
}
void fill(float* x, float v, int64_t n, void* s) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(x, v, n);
  launch_check("fill_kernel");
}
void bias_add(float* y, const float* b, int64_t N, int64_t C, void* s) {
  if (N <= 0 || C <= 0) return;
  bias_add_kernel<<<grid_for(N * C, kThreads), kThreads, 0, as_stream(s)>>>(y, b, N, C);
  launch_check("bias_add_kernel");
}
void bias_grad(float* db, const float* dy, int64_t N, int64_t C, void* s) {
  if (N <= 0 || C <= 0) return;
  bias_grad_kernel<<<unsigned((C + 31) / 32), kBiasWarps * 32, 0, as_stream(s)>>>(db, dy, N, C);
  launch_check("bias_grad_kernel");
}
void to_bf16(void* dst, const float* src, int64_t n, void* s) {
  if (n <= 0) return;
  to_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(static_cast<__nv_bfloat16*>(dst), src,
                                                                       n);
  launch_check("to_bf16_kernel");
}
void from_bf16(float* dst, const void* src, int64_t n, void* s) {
  if (n <= 0) return;
  from_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(
      dst, static_cast<const __nv_bfloat16*>(src), n);
  launch_check("from_bf16_kernel");
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, void* s) {
  if (n <= 0) return;
  swiglu_fwd_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(out, gate, up, n);
  launch_check("swiglu_fwd_kernel");
}
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n, void* s) {
  if (n <= 0) return;
  swiglu_bwd_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(dgate, dup, dout, gate, up, n);
  launch_check("swiglu_bwd_kernel");
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                  float eps, float wd, int64_t step, void* s) {
  if (n <= 0) return;
  // the bias corrections in double on the host, as the CPU kernel does
  const double bc1 = 1.0 - std::pow(double(b1), double(step));
  const double bc2 = 1.0 - std::pow(double(b2), double(step));
  const float step_size = float(double(lr) / bc1), rbc2 = float(1.0 / std::sqrt(bc2));
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(s)>>>(p, g, m, v, n, b1, b2, eps,
                                                                     1.f - lr * wd, step_size, rbc2);
  launch_check("adamw_kernel");
}

double sum_squares(const float* x, int64_t n, void* s) {
  if (n <= 0) return 0.0;
  const int64_t per_block = (n + kSumBlocks - 1) / kSumBlocks;
  const int blocks = int((n + per_block - 1) / per_block);
  double* partial = nullptr;
  cuda_check(cudaMallocAsync(&partial, sizeof(double) * blocks, as_stream(s)), "sum_squares scratch");
  sum_squares_kernel<<<blocks, kThreads, 0, as_stream(s)>>>(partial, x, n, per_block);
  launch_check("sum_squares_kernel");
  std::vector<double> host(size_t(blocks), 0.0);
  cuda_check(
      cudaMemcpyAsync(host.data(), partial, sizeof(double) * blocks, cudaMemcpyDeviceToHost, as_stream(s)),
      "sum_squares copy");
  cuda_check(cudaFreeAsync(partial, as_stream(s)), "sum_squares free");
  cuda_check(cudaStreamSynchronize(as_stream(s)), "sum_squares sync");
  double total = 0;
  for (double v : host) total += v;
  return total;
}

}  // namespace longctx::cuda
