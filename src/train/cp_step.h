// A step with context parallelism: every rank holds the whole batch of token
// ids, runs T/P of every sequence through GradStep with attention across ranks
// (Ulysses), and the parameter gradients are summed over ranks. Lengths that
// do not divide by P are padded at the end (ignored labels, their own
// document); labels are shifted before sharding, so none is lost at a shard
// boundary; the loss is normalised by the global label count.
#pragma once
#include <memory>
#include <string>

#include "comm/comm.h"
#include "parallel/cp_kind.h"
#include "parallel/ring.h"
#include "parallel/ulysses.h"
#include "train/grad_step.h"

namespace longctx {

// Sums a step's gradients over the ranks (the base weights' and the adapters').
void sum_over_ranks(Comm& comm, const Grads& g);

class CpStep {
 public:
  // ulysses_group: hybrid's Ulysses group size (ranks sharing fast links).
  // dp: data-parallel groups taking the ranks (each its B/dp sequences, CP over W/dp ranks).
  CpStep(const LlamaConfig& c, Memory& mem, Comm& comm, int64_t B, int64_t T, const Plan& plan, CpKind kind,
         int ulysses_group = 1, int dp = 1);
  ~CpStep();
  // in: the whole (B, T) batch, the same on every rank; g += this rank's
  // share of the gradient. Returns the global mean loss.
  double run(const ParamSet& w, const Grads& g, const StepInput& in, Context& ctx, double label_norm = 0);
  // Sums the gradients over ranks: once per optimizer step, after every micro-batch.
  void sum_grads(const Grads& g);
  void set_adapters(const LoraSet* a) { step_->set_adapters(a); }
  void set_unit_hook(UnitHook* h) { step_->set_unit_hook(h); }
  int64_t label_count() const { return label_count_; }
  const StepLayout& layout() const { return step_->layout(); }
  int64_t local_tokens() const { return Tl_; }
  int64_t attention_bytes_sent() const {
    return (ulysses_ ? ulysses_->bytes_sent() : 0) + (ring_ ? ring_->bytes_sent() : 0);
  }

 private:
  Comm& comm_;          // every rank: sums of the loss and gradients
  Comm* cp_ = nullptr;  // this data-parallel group's ranks
  std::unique_ptr<Comm> dp_split_;
  int dp_rank_ = 0;
  int64_t B_, T_, Tp_, Tl_, Bl_;
  CpKind kind_;
  std::unique_ptr<Comm> group_, ring_comm_;  // hybrid's sub-communicators
  std::unique_ptr<UlyssesAttention> ulysses_;
  std::unique_ptr<RingAttention> ring_;
  std::unique_ptr<GradStep> step_;
  int64_t label_count_ = 0;
};

}  // namespace longctx
