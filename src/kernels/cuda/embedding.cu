// Embedding lookup and its gradient. The backward is deterministic: a thread
// per column walks the rows in order, so two rows with the same token never
// race and the sum's order is fixed.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {

namespace {
constexpr int kThreads = 256;

__global__ void embedding_fwd_kernel(float* out, const int32_t* tok, const float* wte, int64_t N, int64_t C,
                                     int64_t V) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const int32_t t = tok[n];
    const bool ok = t >= 0 && t < V;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = ok ? wte[int64_t(t) * C + c] : 0.f;
  }
}

// Bucket blockIdx.y takes the tokens t with t % gridDim.y == blockIdx.y: a token's rows are still added in
// row order by one thread, so the result is the same bits for any bucket count, with gridDim.y times the
// threads of one bucket.
__global__ void embedding_bwd_kernel(float* dwte, const float* dout, const int32_t* tok, int64_t N, int64_t C,
                                     int64_t V) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  for (int64_t n = 0; n < N; n++) {
    const int32_t t = tok[n];
    if (t >= 0 && t < V && t % int32_t(gridDim.y) == int32_t(blockIdx.y))
      dwte[int64_t(t) * C + c] += dout[n * C + c];
  }
}
constexpr unsigned kBuckets = 64;
}  // namespace

void embedding_forward(float* out, const int32_t* tok, const float* wte, int64_t N, int64_t C, int64_t V,
                       void* s) {
  if (N <= 0) return;
  embedding_fwd_kernel<<<grid_rows(N), kThreads, 0, as_stream(s)>>>(out, tok, wte, N, C, V);
  launch_check("embedding_fwd_kernel");
}

void embedding_backward(float* dwte, const float* dout, const int32_t* tok, int64_t N, int64_t C, int64_t V,
                        void* s) {
  if (N <= 0 || C <= 0) return;
  // 64 threads a block: C / 64 blocks keep more multiprocessors busy than 256 would
  const dim3 grid(unsigned((C + 63) / 64), kBuckets);
  embedding_bwd_kernel<<<grid, 64, 0, as_stream(s)>>>(dwte, dout, tok, N, C, V);
  launch_check("embedding_bwd_kernel");
}

}  // namespace longctx::cuda
