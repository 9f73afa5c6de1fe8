// Bytes between tiers. The CPU backend moves them with memmove; the CUDA
// backend with cudaMemcpy in any direction (device, pinned or pageable host),
// synchronously for now: overlap comes with the copy
// stream of the offload work.
#include <cstring>

#include "core/context.h"
#include "kernels/cuda/cuda_memory.h"

namespace longctx {

void copy_tensor(const Tensor& dst, const Tensor& src, Context& ctx, bool async) {
  (void)async;
  CHECK(dst.shape == src.shape && dst.dtype == src.dtype, "[copy] dst ", dst.shape.str(), " ",
        dtype_name(dst.dtype), " vs src ", src.shape.str(), " ", dtype_name(src.dtype));
  if (dst.ptr == src.ptr || src.bytes() == 0) return;
  if (ctx.backend == Backend::cuda && dst.tier == Tier::device && src.tier == Tier::device)
    return cuda::copy_device(dst.ptr, src.ptr, src.bytes(), ctx.stream);  // in stream order, no host wait
  if (ctx.backend == Backend::cuda && (dst.tier == Tier::device || src.tier == Tier::device))
    return cuda::copy_bytes(dst.ptr, src.ptr, src.bytes(), ctx.stream);
  std::memmove(dst.ptr, src.ptr, src.bytes());
}

void copy_sync(Context& ctx) {
  if (ctx.backend == Backend::cuda) cuda::synchronize(ctx.stream);
}

}  // namespace longctx
