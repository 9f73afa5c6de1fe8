// Test kernel for common.cuh's block reductions. Each helper is called twice back to back on the same
// shared array, with no other barrier in between (the reuse that the first __syncthreads of each helper
// protects), then block_max reuses block_sum's array. Every thread writes what it got.
#include "kernels/cuda/common.cuh"

namespace longctx::cuda {
__global__ void block_reduce_test_kernel(float* osum, float* omax, double* osumd, const float* in, int reps) {
  __shared__ float shs[32];
  __shared__ double shd[32];
  const int64_t t = threadIdx.x, nt = blockDim.x, b = blockIdx.x;
  for (int r = 0; r < reps; r++) {
    const float x = in[(b * reps + r) * nt + t];
    const float s1 = block_sum(x, shs);
    const float s2 = block_sum(2.f * x, shs);  // back to back: same array
    const float m1 = block_max(x, shs);        // block_max after block_sum: same array
    const float m2 = block_max(-x, shs);
    const double d1 = block_sum_d(double(x) * 3.0, shd);
    const double d2 = block_sum_d(double(x) * 5.0, shd);
    const int64_t o = 2 * ((b * reps + r) * nt + t);
    osum[o] = s1, osum[o + 1] = s2, omax[o] = m1, omax[o + 1] = m2, osumd[o] = d1, osumd[o + 1] = d2;
  }
}
void block_reduce_test(float* osum, float* omax, double* osumd, const float* in, int blocks, int threads,
                       int reps) {
  block_reduce_test_kernel<<<blocks, threads>>>(osum, omax, osumd, in, reps);
  launch_check("block_reduce_test_kernel");
}
}  // namespace longctx::cuda
