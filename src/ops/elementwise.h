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

// One side of copy_rows: rows of `width` elements in t, the first at `offset`, each `pitch` after the last.
struct RowBlock {
  Tensor t;
  int64_t offset = 0, pitch = 0;
};
// The packing of context parallelism (heads and segments in and out of exchange buffers): for i in [0, rows),
// dst's row i = src's row i (accumulate: +=, F32 only). Elements of the tensors' dtype, any tier on either
// side (the CUDA backend copies across; device to device in stream order). dst and src must not overlap.
void copy_rows(RowBlock dst, RowBlock src, int64_t rows, int64_t width, Context& ctx,
               bool accumulate = false);

}  // namespace longctx
