// Fused LM head + cross-entropy on the GPU, tile by tile of rows: logits of
// one tile (cuBLASLt), a softmax + loss + gradient kernel per row in place,
// then d(hidden) and d(W) from the gradient logits. The full (N, V) logits
// never exist; each tile's row losses come back to the host and are summed
// there in row order (deterministic).

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {

namespace {
constexpr int kThreads = 1024;

// Row r of z becomes scale * (softmax - onehot(target)) when want_grad; loss[r] = -log softmax[target]
// (0 and a zero row for an ignored target).
__global__ void __launch_bounds__(kThreads)
    softmax_xent_kernel(float* logits, double* loss, const int32_t* targets, int64_t rows, int64_t V,
                        double scale, bool want_grad) {
  __shared__ float shf[32];
  __shared__ double shd[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* z = logits + r * V;
    const int32_t t = targets[r];
    if (t < 0 || t >= V) {
      if (want_grad)
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x) z[i] = 0.f;
      if (threadIdx.x == 0) loss[r] = 0.0;
      continue;
    }
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, z[i]);
    mx = block_max(mx, shf);
    double sum = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) sum += double(expf(z[i] - mx));
    sum = block_sum_d(sum, shd);
    const double lse = double(mx) + log(sum);
    const float zt = z[t];
    __syncthreads();  // z[t] is read before any thread overwrites it
    if (threadIdx.x == 0) loss[r] = lse - double(zt);
    if (want_grad) {
      const float flse = float(lse), fs = float(scale);
      for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
        z[i] = expf(z[i] - flse) * fs - (i == t ? fs : 0.f);
    }
  }
}
// total += the tile's row losses, one after another: the CPU's order, so the same bits, and no host wait
__global__ void add_rows_kernel(double* total, const double* rows_loss, int64_t rows) {
  double t = *total;
  for (int64_t r = 0; r < rows; r++) t += rows_loss[r];
  *total = t;
}
}  // namespace

double lm_head_loss(float* dhidden, float* dw, const float* hidden, const float* w, const int32_t* targets,
                    int64_t N, int64_t C, int64_t V, double scale, int64_t tile, float* logits,
                    double* row_loss, bool bf16, void* s) {
  const bool want_grad = dhidden || dw;
  cudaStream_t st = as_stream(s);
  double* total_dev = row_loss + tile;  // row_loss holds tile + 1 doubles: the running total last
  cuda_check(cudaMemsetAsync(total_dev, 0, sizeof(double), st), "lm_head_loss total");
  for (int64_t r0 = 0; r0 < N; r0 += tile) {
    const int64_t rows = std::min(tile, N - r0);
    const float* h = hidden + r0 * C;                          // (rows, C)
    matmul_forward(logits, h, w, rows, C, V, false, bf16, s);  // (rows, V)
    softmax_xent_kernel<<<grid_rows(rows), kThreads, 0, st>>>(logits, row_loss, targets + r0, rows, V, scale,
                                                              want_grad);
    launch_check("softmax_xent_kernel");
    // (rows, C) = dlogits @ w ; (V, C) += dlogits^T @ h
    if (want_grad)
      matmul_backward(dhidden ? dhidden + r0 * C : nullptr, dw, logits, h, w, rows, C, V, false, bf16, s);
    add_rows_kernel<<<1, 1, 0, st>>>(total_dev, row_loss, rows);
    launch_check("add_rows_kernel");
  }
  double total = 0;  // one wait for the whole loss
  cuda_check(cudaMemcpyAsync(&total, total_dev, sizeof(double), cudaMemcpyDeviceToHost, st),
             "lm_head_loss total");
  cuda_check(cudaStreamSynchronize(st), "lm_head_loss sync");
  return total * scale;
}

}  // namespace longctx::cuda
