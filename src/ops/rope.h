// Rotary embeddings, HF rotate-half convention: the pair (i, i + HS/2).
#pragma once
#include "core/context.h"

namespace longctx {

// out (N, H, HS) = rotate(inp (N, H, HS)) by angle pos[n] * inv_freq[i];
// pos (N) I32; cos, sin (P, HS/2) F32 tables for positions [0, P). out may alias inp.
void rope_forward(Tensor out, Tensor inp, Tensor pos, Tensor cos, Tensor sin, Context& ctx);
// dinp (N, H, HS) = rotate back dout; dinp may alias dout.
void rope_backward(Tensor dinp, Tensor dout, Tensor pos, Tensor cos, Tensor sin, Context& ctx);

}  // namespace longctx
