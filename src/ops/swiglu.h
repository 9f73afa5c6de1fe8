#pragma once
#include "core/context.h"

namespace longctx {

// out (N, F) = silu(gate) * up
void swiglu_forward(Tensor out, Tensor gate, Tensor up, Context& ctx);
// dgate, dup (N, F) = ; they may alias gate and up (read before written per element).
void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up, Context& ctx);

}  // namespace longctx
