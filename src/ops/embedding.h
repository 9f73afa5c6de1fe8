#pragma once
#include "core/context.h"

namespace longctx {

// out (N, C) = wte[tokens[n]]; tokens (N) I32, wte (V, C). Ids outside [0, V) throw.
void embedding_forward(Tensor out, Tensor tokens, Tensor wte, Context& ctx);
// dwte (V, C) += rows of dout (N, C) scattered by tokens.
void embedding_backward(Tensor dwte, Tensor dout, Tensor tokens, Context& ctx);

}  // namespace longctx
