// One forward + backward over a batch: the loop over blocks that the
// scheduler owns. Plain plan for now: every block keeps only its input
// (checkpoint) and is recomputed right before its backward.
#pragma once
#include <memory>
#include <vector>

#include "core/context.h"
#include "model/block.h"
#include "model/params.h"

namespace longctx {

class GradStep {
 public:
  // Allocates every buffer of the step for batches of (B, T) tokens.
  GradStep(const LlamaConfig& c, Memory& mem, int64_t B, int64_t T);
  // inputs, labels (B, T) I32 on any tier; labels may hold kIgnoreIndex.
  // grads += d(loss)/d(w); returns the loss, the mean over non-ignored labels.
  double run(const ParamSet& w, ParamSet& grads, Tensor inputs, Tensor labels, Context& ctx);
  int64_t label_count() const { return label_count_; }

 private:
  LlamaConfig c_;
  int64_t B_, T_;
  Buffer tokens_, labels_;         // (N) I32
  Buffer pos_, cos_, sin_;         // (N) I32, (T, HS/2), (T, HS/2)
  std::vector<Buffer> ckpt_;       // L x (N, C): each block's input
  Buffer xL_, hf_, rstdf_, dhf_, dx_;  // (N, C), (N, C), (N), (N, C), (N, C)
  std::unique_ptr<ActBuffer> acts_, grads_;
  BlockShared shared_;
  int64_t label_count_ = 0;
};

}  // namespace longctx
