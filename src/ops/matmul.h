// Linear layers through BLAS, weights in HF nn.Linear layout (OC, IC).
#pragma once
#include "core/context.h"

namespace longctx {

// out (N, OC) = (or += when accumulate) inp (N, IC) @ weight (OC, IC)^T
void matmul_forward(Tensor out, Tensor inp, Tensor weight, Context& ctx, bool accumulate = false);
// dinp (N, IC) = (or += when accumulate) dout @ weight; dweight (OC, IC) += dout^T @ inp.
// Either output may be an undefined tensor to skip it.
void matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Context& ctx,
                     bool accumulate = false);

}  // namespace longctx
