// Fused, tiled LM head + cross-entropy. Per tile of rows: logits, log-softmax,
// loss, and at once d(hidden) and d(W) for that tile; the full (N, V) logits
// never exist.
#pragma once
#include "core/context.h"

namespace longctx {

constexpr int32_t kIgnoreIndex = -100;

// hidden (N, C), weight (V, C), targets (N) I32 in [0, V) or kIgnoreIndex.
// Returns scale * sum over non-ignored rows of -log softmax(hidden W^T)[target].
// dhidden (N, C) = and dweight (V, C) += the gradient of that value; pass
// undefined tensors for a forward-only (eval) pass. tile_rows 0: automatic.
double lm_head_loss(Tensor dhidden, Tensor dweight, Tensor hidden, Tensor weight, Tensor targets,
                    double scale, int64_t tile_rows, Context& ctx);

int64_t lm_head_loss_auto_tile(int64_t N, int64_t V);
size_t lm_head_loss_workspace_bytes(int64_t N, int64_t V, int64_t C, int64_t tile_rows);

}  // namespace longctx
