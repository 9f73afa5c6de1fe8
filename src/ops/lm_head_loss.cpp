#include "ops/lm_head_loss.h"

#include <algorithm>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"
#include "ops/validate.h"

namespace longctx {

// Tiles of about 32 MiB of logits: large enough for BLAS to run at speed,
// small next to the (N, V) logits it replaces when V is 128K.
int64_t lm_head_loss_auto_tile(int64_t N, int64_t V) {
  const int64_t rows = (int64_t(32) << 20) / (4 * std::max<int64_t>(V, 1));
  return std::clamp<int64_t>(rows, 16, std::max<int64_t>(N, 1));
}

size_t lm_head_loss_workspace_bytes(int64_t N, int64_t V, int64_t C, int64_t tile_rows) {
  const int64_t tile =
      tile_rows > 0 ? std::min(tile_rows, std::max<int64_t>(N, 1)) : lm_head_loss_auto_tile(N, V);
  return size_t(tile) * size_t(V) * 4 + size_t(tile + 1) * 8;  // logits (tile, V) F32, row losses + total F64
}

double lm_head_loss(Tensor dhidden, Tensor dweight, Tensor hidden, Tensor weight, Tensor targets,
                    double scale, int64_t tile_rows, Context& ctx) {
  const char* op = "lm_head_loss";
  ops::expect_ndim(op, "hidden", hidden, 2);
  ops::expect_ndim(op, "weight", weight, 2);
  const int64_t N = hidden.dim(0), C = hidden.dim(1), V = weight.dim(0);
  ops::expect(op, "weight", weight, {V, C});
  ops::expect(op, "targets", targets, {N}, DType::I32);
  if (dhidden.defined()) ops::expect(op, "dhidden", dhidden, {N, C});
  if (dweight.defined()) ops::expect(op, "dweight", dweight, {V, C});
  const int32_t* t = targets.i32();
  if (ops::host_readable(targets, ctx))  // on the GPU an id out of range counts as ignored
    for (int64_t n = 0; n < N; n++)
      CHECK(t[n] == kIgnoreIndex || (t[n] >= 0 && t[n] < V), "[", op, "] target ", t[n], " at row ", n,
            " is outside the vocabulary [0, ", V, ") and is not the ignore index ", kIgnoreIndex);
  const int64_t tile =
      tile_rows > 0 ? std::min(tile_rows, std::max<int64_t>(N, 1)) : lm_head_loss_auto_tile(N, V);
  Buffer logits(*ctx.mem, Tier::device, Tag::workspace, {tile, V});                 // (tile, V)
  Buffer row_loss(*ctx.mem, Tier::device, Tag::workspace, {tile + 1}, DType::F64);  // (tile), the total
  float* dh = dhidden.defined() ? dhidden.f32() : nullptr;
  float* dw = dweight.defined() ? dweight.f32() : nullptr;
  double* rl = row_loss.t().as<double>();
  if (ops::on_cuda(ctx))
    return cuda::lm_head_loss(dh, dw, hidden.f32(), weight.f32(), t, N, C, V, scale, tile, logits.f32(), rl,
                              ops::bf16_math(ctx), ctx.stream);
  return cpu::lm_head_loss(dh, dw, hidden.f32(), weight.f32(), t, N, C, V, scale, tile, logits.f32(), rl);
}

}  // namespace longctx
