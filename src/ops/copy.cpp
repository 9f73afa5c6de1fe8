// Bytes between tiers. The CPU backend moves them with memmove; the CUDA
// backend with cudaMemcpy in any direction (device, pinned or pageable host),
// synchronously for now: overlap comes with the copy
// stream of the offload work.
#include <cstring>

#include "core/check.h"
#include "core/context.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_memory.h"
#include "ops/elementwise.h"

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

namespace {
void check_rows(const char* side, const RowBlock& b, int64_t rows, int64_t width) {
  CHECK(b.t.defined(), "[copy_rows] ", side, " is missing");
  CHECK(b.offset >= 0 && (rows == 1 || b.pitch >= width), "[copy_rows] ", side, ": offset ", b.offset,
        ", pitch ", b.pitch, " for rows of ", width);
  const int64_t end = b.offset + (rows - 1) * b.pitch + width;
  CHECK(end <= b.t.numel(), "[copy_rows] ", side, ": ", rows, " rows of ", width, " at ", b.offset, " every ",
        b.pitch, " end at ", end, ", past its ", b.t.numel(), " elements (", b.t.shape.str(), ")");
}
}  // namespace

void copy_rows(RowBlock dst, RowBlock src, int64_t rows, int64_t width, Context& ctx, bool accumulate) {
  CHECK(rows >= 0 && width >= 0, "[copy_rows] ", rows, " rows of ", width);
  if (rows == 0 || width == 0) return;
  CHECK(dst.t.dtype == src.t.dtype, "[copy_rows] dst is ", dtype_name(dst.t.dtype), ", src ",
        dtype_name(src.t.dtype));
  CHECK(!accumulate || dst.t.dtype == DType::F32, "[copy_rows] accumulates F32 only, not ",
        dtype_name(dst.t.dtype));
  check_rows("dst", dst, rows, width);
  check_rows("src", src, rows, width);
  const size_t es = dtype_size(dst.t.dtype);
  char* d = static_cast<char*>(dst.t.ptr) + dst.offset * es;
  const char* s = static_cast<const char*>(src.t.ptr) + src.offset * es;
  if (ctx.backend == Backend::cuda) {
    const bool on_device = dst.t.tier == Tier::device && src.t.tier == Tier::device;
    if (accumulate) {
      CHECK(on_device, "[copy_rows] accumulates on the device only");
      return cuda::add_rows(reinterpret_cast<float*>(d), dst.pitch, reinterpret_cast<const float*>(s),
                            src.pitch, width, rows, ctx.stream);
    }
    return cuda::copy_2d(d, size_t(dst.pitch) * es, s, size_t(src.pitch) * es, size_t(width) * es,
                         size_t(rows), on_device, ctx.stream);
  }
  for (int64_t i = 0; i < rows; i++) {
    char* o = d + i * dst.pitch * int64_t(es);
    const char* x = s + i * src.pitch * int64_t(es);
    if (!accumulate) {
      std::memcpy(o, x, size_t(width) * es);
      continue;
    }
    float* of = reinterpret_cast<float*>(o);
    const float* xf = reinterpret_cast<const float*>(x);
    for (int64_t e = 0; e < width; e++) of[e] += xf[e];
  }
}

void copy_sync(Context& ctx) {
  if (ctx.backend == Backend::cuda) cuda::synchronize(ctx.stream);
}

}  // namespace longctx
