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
// The bias of a linear layer: y (N, OC) += b (OC) on every row; db (OC) += the sum of dy's (N, OC) rows
// (summed in double, in a fixed order for a given thread count).
void bias_add_forward(Tensor y, Tensor b, Context& ctx);
void bias_add_backward(Tensor db, Tensor dy, Context& ctx);
// dst = src between F32 and BF16 (round to nearest even; NaN stays NaN), the same number of elements: the
// K/V cache kept in bf16.
void convert_dtype(Tensor dst, Tensor src, Context& ctx);

}  // namespace longctx
