// Rotary embeddings, rotate-half: the pair (i, i + HS/2) turns by the table
// row pos[n]'s angle; sign -1 turns back (the backward). out may alias inp:
// each thread reads its pair before writing it.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {

namespace {
__global__ void rope_kernel(float* out, const float* inp, const int32_t* pos, const float* cos,
                            const float* sin, int64_t N, int64_t H, int64_t HS, float sign) {
  const int64_t half = HS / 2, total = N * H * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, nh = idx / half, n = nh / H;
    const int64_t row = int64_t(pos[n]) * half;
    const float c = cos[row + i], si = sign * sin[row + i];
    const float* x = inp + nh * HS;
    float* y = out + nh * HS;
    const float a = x[i], b = x[i + half];
    y[i] = a * c - b * si;
    y[i + half] = b * c + a * si;
  }
}
}  // namespace

void rope_apply(float* out, const float* inp, const int32_t* pos, const float* cos, const float* sin,
                int64_t N, int64_t H, int64_t HS, float sign, void* s) {
  const int64_t total = N * H * (HS / 2);
  if (total <= 0) return;
  rope_kernel<<<grid_for(total, 256), 256, 0, as_stream(s)>>>(out, inp, pos, cos, sin, N, H, HS, sign);
  launch_check("rope_kernel");
}

}  // namespace longctx::cuda
