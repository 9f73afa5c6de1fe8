// FLOP counts of a training step, for throughput and MFU figures.
#pragma once
#include <cstdint>

#include "model/config.h"

namespace longctx {

struct StepFlops {
  double model = 0;     // forward + backward of what the loss needs, no recompute (the MFU convention)
  double executed = 0;  // including the recomputed block forwards
};
// Causal attention counts half of the T x T score matrix. suffix (0: T): the
// last block's queries and all after them only for the last `suffix` rows of
// each row (GradStep's labeled suffix); its keys and values for every row.
StepFlops step_flops(const LlamaConfig& c, int64_t B, int64_t T, bool recompute_blocks, int64_t suffix = 0);
// Visible (query, key) pairs of causal attention for the queries at positions [q_offset, q_offset + Tq)
// over keys from 0, with a sliding window of `window` keys (0: none).
double attention_pairs(int64_t q_offset, int64_t Tq, int64_t window);

}  // namespace longctx
