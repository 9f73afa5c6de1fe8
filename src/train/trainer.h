// The training loop of `longctx train`: data, accumulation, clipping, AdamW
// with warmup + cosine, metrics, checkpoints and resume, final export.
#pragma once
#include <cstdio>
#include <string>

#include "train/train_config.h"

namespace longctx {

struct TrainResult {
  int64_t steps_done = 0;
  double last_loss = 0;
  int stopped_by = 0;      // the signal that stopped the run early (its checkpoint written), 0: none
  std::string checkpoint;  // the newest checkpoint this run wrote ("": none)
};

class Comm;
// comm: the ranks of a context-parallel run (null or one rank: local).
TrainResult run_training(const TrainConfig& cfg, Comm* comm = nullptr);

}  // namespace longctx
