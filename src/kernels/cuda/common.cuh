// What every CUDA kernel file shares: error checks that name the kernel, the
// stream cast, and launch-size helpers. Included by .cu files only.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/check.h"

namespace longctx::cuda {

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) FAIL("[cuda] ", what, " failed: ", cudaGetErrorString(e));
}
// After a launch: the launch's own error (bad configuration) now, not at the next sync.
inline void launch_check(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

// Blocks for a grid-stride loop over n elements: at most 65535 * 8 blocks of `threads`
// (grid-stride covers the rest), at least 1.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t want = (n + threads - 1) / threads;
  return unsigned(std::clamp<int64_t>(want, 1, int64_t(65535) * 8));
}

// One block per row: rows beyond the grid limit are handled by a row-stride loop in the kernel.
inline unsigned grid_rows(int64_t rows) { return unsigned(std::clamp<int64_t>(rows, 1, int64_t(1) << 30)); }

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// A reduction over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds 32 values. Fixed order: deterministic. warp_op reduces a warp, `none` is the identity.
template <class T, class WarpOp>
__device__ inline T block_reduce(T v, T* shared, WarpOp warp_op, T none) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  v = warp_op(v);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : none;
  return warp_op(v);
}
__device__ inline float block_sum(float v, float* shared) {
  return block_reduce(
      v, shared, [](float x) { return warp_sum(x); }, 0.f);
}
__device__ inline float block_max(float v, float* shared) {
  return block_reduce(
      v, shared, [](float x) { return warp_max(x); }, -INFINITY);
}
__device__ inline double block_sum_d(double v, double* shared) {
  return block_reduce(
      v, shared, [](double x) { return warp_sum_d(x); }, 0.0);
}

}  // namespace longctx::cuda
