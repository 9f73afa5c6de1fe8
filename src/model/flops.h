// FLOP counts of a training step, for throughput and MFU figures.
#pragma once
#include <cstdint>

#include "model/config.h"

namespace longctx {

struct StepFlops {
  double model = 0;     // forward + backward, no recompute (the MFU convention)
  double executed = 0;  // including the recomputed block forwards
};
// Causal attention counts half of the T x T score matrix.
StepFlops step_flops(const LlamaConfig& c, int64_t B, int64_t T, bool recompute_blocks);

}  // namespace longctx
