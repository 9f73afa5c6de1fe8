// The step a plan asks for: GradStep for whole sequences, ChunkedStep for
// SeCO / SpaCO, CpStep across ranks. Callers (grad, train) hold one of these.
#pragma once
#include <memory>

#include "core/check.h"
#include "train/chunked_step.h"
#include "train/cp_step.h"
#include "train/grad_step.h"

namespace longctx {

class AnyStep {
 public:
  AnyStep(const LlamaConfig& c, Memory& mem, int64_t B, int64_t T, const Plan& plan, Comm* comm = nullptr,
          CpKind kind = CpKind::ulysses, int ulysses_group = 1, int dp = 1) {
    const bool ranks = comm && comm->size() > 1;
    if (ranks && plan.chunked()) {
      // chunks across ranks: Ulysses on each chunk, the K/V cache head-sharded; ring, the cache in token
      // slices; or hybrid, both. Zigzag balances causal work that chunks already balance (only a chunk's own
      // page is causal); --dp is not combined with chunks.
      CHECK(kind != CpKind::upipe && kind != CpKind::zigzag && dp == 1, "plan: --chunk-mode ",
            chunk_mode_name(plan.chunk_mode),
            " runs across ranks with --cp-kind ulysses, ring or hybrid and no ", "--dp (", cp_kind_name(kind),
            dp > 1 ? " with --dp" : "", " is not combined with chunks",
            kind == CpKind::zigzag ? "; with chunks only each chunk's own page is causal, so ring is balanced"
                                   : "",
            ")");
      chunked_ = std::make_unique<ChunkedStep>(c, mem, T, plan, comm, kind, ulysses_group);
      comm_ = comm;
    } else if (ranks) {
      cp_ = std::make_unique<CpStep>(c, mem, *comm, B, T, plan, kind, ulysses_group, dp);
    } else if (plan.chunked()) {
      chunked_ = std::make_unique<ChunkedStep>(c, mem, T, plan);
    } else {
      whole_ = std::make_unique<GradStep>(c, mem, B, T, plan);
    }
  }
  // grads += d(loss)/d(w) (SpaCO: an unbiased estimate; `draw` picks its chunks).
  double run(const ParamSet& w, const Grads& g, const StepInput& in, Context& ctx, double label_norm = 0,
             uint64_t draw = 0) {
    if (cp_) return cp_->run(w, g, in, ctx, label_norm);
    return chunked_ ? chunked_->run(w, g, in, ctx, label_norm, draw) : whole_->run(w, g, in, ctx, label_norm);
  }
  // After the last micro-batch of a step: gradients summed over ranks (CP).
  void finish_grads(const Grads& g) {
    if (cp_) cp_->sum_grads(g);
    if (comm_) sum_over_ranks(*comm_, g);
  }
  double run(const ParamSet& w, ParamSet& g, const StepInput& in, Context& ctx, double label_norm = 0,
             uint64_t draw = 0) {
    return run(w, Grads{&g, nullptr}, in, ctx, label_norm, draw);
  }
  void set_adapters(const LoraSet* a) {
    if (cp_) return cp_->set_adapters(a);
    chunked_ ? chunked_->set_adapters(a) : whole_->set_adapters(a);
  }
  // ZeRO-2/3: weights and gradients by unit (GradStep across ranks only)
  void set_unit_hook(UnitHook* h) {
    if (cp_) return cp_->set_unit_hook(h);
    chunked_ ? chunked_->set_unit_hook(h) : whole_->set_unit_hook(h);
  }
  // The last block on the labeled suffix only (whole-sequence steps; on by default).
  void set_label_suffix(bool on) {
    if (whole_) whole_->set_label_suffix(on);
  }
  // The rows of each sequence the last block ran on in the latest run (T: all).
  int64_t suffix_rows(int64_t T) const { return whole_ ? whole_->suffix_rows() : T; }
  int64_t label_count() const {
    return cp_ ? cp_->label_count() : chunked_ ? chunked_->label_count() : whole_->label_count();
  }
  int64_t cp_bytes_sent() const {  // this rank, so far
    return cp_ ? cp_->attention_bytes_sent() : chunked_ ? chunked_->cp_bytes_sent() : 0;
  }
  // The chunked step (SeCO / SpaCO, one rank or Ulysses across ranks); null for a whole-sequence plan.
  ChunkedStep* chunked() { return chunked_.get(); }
  const StepLayout& layout() const {
    return cp_ ? cp_->layout() : chunked_ ? chunked_->layout() : whole_->layout();
  }

 private:
  std::unique_ptr<GradStep> whole_;
  std::unique_ptr<ChunkedStep> chunked_;
  std::unique_ptr<CpStep> cp_;
  Comm* comm_ = nullptr;  // chunks across ranks: gradients summed here
};

}  // namespace longctx
