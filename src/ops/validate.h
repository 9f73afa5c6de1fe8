// Shape and dtype checks at the op boundary; every message names the op.
#pragma once
#include "core/context.h"

namespace longctx::ops {

inline void expect(const char* op, const char* name, const Tensor& t, const Shape& want,
                   DType dt = DType::F32) {
  CHECK(t.defined(), "[", op, "] ", name, " is missing (expected ", want.str(), ")");
  CHECK(t.shape == want, "[", op, "] ", name, " has shape ", t.shape.str(), ", expected ", want.str());
  CHECK(t.dtype == dt, "[", op, "] ", name, " is ", dtype_name(t.dtype), ", expected ", dtype_name(dt));
}

inline void expect_ndim(const char* op, const char* name, const Tensor& t, int n) {
  CHECK(t.defined(), "[", op, "] ", name, " is missing");
  CHECK(t.ndim() == n, "[", op, "] ", name, " has shape ", t.shape.str(), ", expected ", n, " dims");
}

inline bool on_cuda(const Context& ctx) { return ctx.backend == Backend::cuda; }
inline bool bf16_math(const Context& ctx) { return ctx.backend == Backend::cuda && ctx.math == DType::BF16; }

// Whether the op layer may read a tensor's bytes to validate them (not when they are in GPU memory).
inline bool host_readable(const Tensor& t, const Context& ctx) {
  return !ctx.mem || ctx.mem->host_accessible(t.tier);
}

}  // namespace longctx::ops
