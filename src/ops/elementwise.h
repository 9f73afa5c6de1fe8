#pragma once
#include "core/context.h"

namespace longctx {

// out = a + b (all the same shape; out may alias either)
void add_forward(Tensor out, Tensor a, Tensor b, Context& ctx);
// sum of squares in double, for gradient norms
double sum_squares(Tensor x, Context& ctx);
void scale_inplace(Tensor x, float s, Context& ctx);
// y += a * x (same shape)
void axpy_inplace(Tensor y, float a, Tensor x, Context& ctx);
void fill_inplace(Tensor x, float value, Context& ctx);

}  // namespace longctx
