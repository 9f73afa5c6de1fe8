// The accumulating half of copy_rows (the copying half is cudaMemcpy2DAsync): strided rows added into
// strided rows, for the gradients of K/V heads that several query heads or segments share.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {

namespace {
constexpr int kThreads = 256;

// element e of the rows * width block: row e / width, column e % width
// (int64 indexing: pitches past 2^31 elements are fine)
__global__ void add_rows_kernel(float* dst, int64_t dpitch, const float* src, int64_t spitch, int64_t width,
                                int64_t n) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / width, j = e % width;
    dst[i * dpitch + j] += src[i * spitch + j];
  }
}
}  // namespace

void add_rows(float* dst, int64_t dpitch, const float* src, int64_t spitch, int64_t width, int64_t rows,
              void* stream) {
  const int64_t n = width * rows;
  if (n == 0) return;
  add_rows_kernel<<<grid_for(n, kThreads), kThreads, 0, as_stream(stream)>>>(dst, dpitch, src, spitch, width,
                                                                             n);
  launch_check("add_rows");
}

}  // namespace longctx::cuda
