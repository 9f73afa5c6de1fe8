#pragma once
#include "core/context.h"

namespace longctx {

struct AdamWParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.f;
  int64_t step = 1;  // 1-based, for bias correction
};

// PyTorch's AdamW: decoupled decay, bias-corrected moments. param, grad, m, v same shape, F32.
void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p, Context& ctx);

}  // namespace longctx
