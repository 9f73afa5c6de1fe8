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

inline void expect_cpu(const char* op, const Context& ctx) {
  CHECK(ctx.backend == Backend::cpu, "[", op, "] no kernel for this backend in this build");
}

}  // namespace longctx::ops
