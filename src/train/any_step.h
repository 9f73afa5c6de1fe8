// The step a plan asks for: GradStep for whole sequences, ChunkedStep for
// SeCO / SpaCO. Callers (grad, train) hold one of these.
#pragma once
#include <memory>

#include "train/chunked_step.h"
#include "train/grad_step.h"

namespace longctx {

class AnyStep {
 public:
  AnyStep(const LlamaConfig& c, Memory& mem, int64_t B, int64_t T, const Plan& plan) {
    if (plan.chunked())
      chunked_ = std::make_unique<ChunkedStep>(c, mem, T, plan);
    else
      whole_ = std::make_unique<GradStep>(c, mem, B, T, plan);
  }
  // grads += d(loss)/d(w) (SpaCO: an unbiased estimate; `draw` picks its chunks).
  double run(const ParamSet& w, const Grads& g, const StepInput& in, Context& ctx, double label_norm = 0,
             uint64_t draw = 0) {
    return chunked_ ? chunked_->run(w, g, in, ctx, label_norm, draw) : whole_->run(w, g, in, ctx, label_norm);
  }
  double run(const ParamSet& w, ParamSet& g, const StepInput& in, Context& ctx, double label_norm = 0,
             uint64_t draw = 0) {
    return run(w, Grads{&g, nullptr}, in, ctx, label_norm, draw);
  }
  void set_adapters(const LoraSet* a) { chunked_ ? chunked_->set_adapters(a) : whole_->set_adapters(a); }
  int64_t label_count() const { return chunked_ ? chunked_->label_count() : whole_->label_count(); }
  const StepLayout& layout() const { return chunked_ ? chunked_->layout() : whole_->layout(); }

 private:
  std::unique_ptr<GradStep> whole_;
  std::unique_ptr<ChunkedStep> chunked_;
};

}  // namespace longctx
