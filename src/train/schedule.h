#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace longctx {

// Linear warmup to lr over warmup steps, then cosine decay to min_lr at step
// decay_end (the last step, or the config's decay_steps), min_lr after it.
// step is 0-based.
inline double lr_at(int64_t step, int64_t decay_end, int64_t warmup, double lr, double min_lr) {
  if (step < warmup) return lr * double(step + 1) / double(warmup);
  const double span = double(std::max<int64_t>(1, decay_end - warmup));
  const double p = std::min(1.0, double(step - warmup) / span);
  return min_lr + 0.5 * (lr - min_lr) * (1 + std::cos(M_PI * p));
}

}  // namespace longctx
