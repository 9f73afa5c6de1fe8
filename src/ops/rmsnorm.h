#pragma once
#include "core/context.h"

namespace longctx {

// out (N, C) = inp * rstd * weight, rstd (N) = 1/sqrt(mean(inp^2) + eps); weight (C)
void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps, Context& ctx);
// dinp (N, C) = (or += when accumulate) ; dweight (C) +=
void rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd,
                      Context& ctx, bool accumulate = false);

}  // namespace longctx
