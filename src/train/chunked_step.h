// Chunk-wise training (SeCO, SpaCO). The sequence is cut into k chunks that
// go through all blocks one at a time. Forward, chunks in order, fills every
// block's KV cache (whole sequence, on the offload tier); nothing else is kept.
// Backward, chunks in reverse: rerun chunk j (the plan's recompute policy
// inside it), take its loss gradient, and backpropagate; attention to earlier
// chunks reads their cached K/V page by page and adds into their cached K/V
// gradients, which chunk j itself picks up when its turn comes. Exact.
// SpaCO backpropagates only `chunk_budget` of the chunks, drawn at random,
// scaling by k / s: unbiased, and backward cost proportional to s.
#pragma once
#include <memory>
#include <vector>

#include "train/grad_step.h"

namespace longctx {

class KvPages;

class ChunkedStep {
 public:
  ChunkedStep(const LlamaConfig& c, Memory& mem, int64_t T, const Plan& plan);
  ~ChunkedStep();
  const StepLayout& layout() const { return lay_; }
  // As GradStep::run, for one sequence (B = 1). `draw` seeds SpaCO's choice.
  double run(const ParamSet& w, const Grads& grads, const StepInput& in, Context& ctx, double label_norm = 0,
             uint64_t draw = 0);
  void set_adapters(const LoraSet* a) { step_->set_adapters(a); }
  int64_t label_count() const { return label_count_; }
  // The chunks SpaCO backpropagates for `draw` (all of them under SeCO).
  std::vector<int64_t> chosen_chunks(uint64_t draw) const;

 private:
  StepInput chunk_input(int64_t j, const StepInput& in);

  LlamaConfig c_;
  StepLayout lay_;
  int64_t k_ = 0;  // chunks
  std::unique_ptr<KvPages> kv_;
  std::unique_ptr<GradStep> step_;
  std::vector<int32_t> pos_, doc_;  // (T) the whole sequence's positions and document ids
  std::vector<int32_t> chunk_tok_, chunk_lab_, chunk_pos_, chunk_doc_;  // (Tc) the chunk being run
  int64_t label_count_ = 0;
};

}  // namespace longctx
