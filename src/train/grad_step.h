// One forward + backward over a batch: the loop over blocks, run as the Plan
// says (recompute policy, offload of saved state, MLP and loss tiles). Every
// buffer comes from the StepLayout that `longctx plan` sums.
#pragma once
#include <array>
#include <memory>
#include <vector>

#include "core/context.h"
#include "model/block.h"
#include "model/params.h"
#include "model/unit_hook.h"
#include "strategy/memory_model.h"
#include "train/saved_store.h"

namespace longctx {

// One micro-batch. positions and doc_ids are optional (B, T) I32: without
// them positions run 0..T-1 in every row and a row is one document.
struct StepInput {
  Tensor inputs, labels;  // (B, T) I32; labels may hold kIgnoreIndex
  Tensor positions, doc_ids;
};

class GradStep {
 public:
  // Allocates every buffer of the step for batches of (B, T) tokens.
  GradStep(const LlamaConfig& c, Memory& mem, int64_t B, int64_t T, const Plan& plan = Plan{});
  // One chunk's pass of chunked training: rows of the layout's chunk, rope
  // tables for the whole sequence, attention through `runner`.
  GradStep(const LlamaConfig& c, Memory& mem, const StepLayout& chunk_layout, AttentionRunner* runner);
  ~GradStep();
  const StepLayout& layout() const { return lay_; }
  // inputs, labels (B, T) I32 on any tier; labels may hold kIgnoreIndex.
  // grads += d(loss)/d(w); returns the loss, the mean over non-ignored labels.
  double run(const ParamSet& w, ParamSet& grads, Tensor inputs, Tensor labels, Context& ctx);
  // As above; gradients are those of (sum of losses) / label_norm, so that
  // micro-batches of one accumulated step share one normaliser (0: this
  // batch's own label count). Returns this batch's mean loss.
  double run(const ParamSet& w, ParamSet& grads, const StepInput& in, Context& ctx, double label_norm = 0) {
    return run(w, Grads{&grads, nullptr}, in, ctx, label_norm);
  }
  double run(const ParamSet& w, const Grads& g, const StepInput& in, Context& ctx, double label_norm = 0);
  // LoRA adapters applied in every pass from now on (null: none). Their
  // rank and targets must be those of the plan's lora config.
  void set_adapters(const LoraSet* a);
  // Weights and gradients by unit through `h` (null: the ParamSets as given).
  void set_unit_hook(UnitHook* h) { hook_ = h; }
  // Forward only: the mean loss, or the final-norm hidden states (N, C)
  // (valid until the next call) for logits of chosen rows.
  double forward_loss(const ParamSet& w, const StepInput& in, Context& ctx);
  Tensor forward_hidden(const ParamSet& w, const StepInput& in, Context& ctx);
  // Chunked training's first pass: only what fills the runner's K/V caches
  // (every block's K/V; the last block stops there, no loss).
  void forward_kv(const ParamSet& w, const StepInput& in, Context& ctx);
  int64_t label_count() const { return label_count_; }
  // Whether the last block may run on the labeled suffix only (on by default;
  // exact, so off is for tests that compare against the whole block).
  void set_label_suffix(bool on) { suffix_allowed_ = on; }
  // The suffix of this batch's rows that the last block ran on (S: T when whole).
  int64_t suffix_rows() const { return suffix_.S > 0 ? suffix_.S : T_; }

 private:
  void prepare(const StepInput& in, Context& ctx, bool allow_suffix = true);
  void find_suffix(int32_t* lab, int32_t* spos, const int32_t* doc, bool docs, bool allow_suffix);
  // What prepare() builds on the host, in staging_'s order; host_of(b): b itself, or its staging buffer.
  std::array<const Buffer*, 6> host_built() const {
    return {&labels_, &pos_, &docs_, &cos_, &sin_, &suffix_idx_};
  }
  Tensor host_of(const Buffer& b) const;
  void forward(const ParamSet& w, Context& ctx, bool kv_only = false);
  void backward(const ParamSet& w, const Grads& g, Context& ctx);
  // The last block on the labeled suffix (suffix_.S > 0): forward into the
  // first B*S rows of xL_, backward from those rows of dx_.
  void suffix_forward(const ParamSet& w, Context& ctx);
  void suffix_backward(const ParamSet& w, const Grads& g, Context& ctx);
  LayerParams layer(const ParamSet& w, int64_t l) const;
  LayerParams layer_grads(const Grads& g, int64_t l) const;
  // over the first `rows` rows of xL_ and labels_
  double head_loss(const ParamSet& w, const Grads* grads, double scale, int64_t rows, Context& ctx);
  int64_t head_rows() const { return suffix_.S > 0 ? B_ * suffix_.S : B_ * T_; }
  BlockActs acts_of(const ActBuffer& saved) const { return bind_acts(saved, *scratch_); }

  LlamaConfig c_;
  int64_t B_, T_;
  StepLayout lay_;
  Buffer tokens_, labels_;             // (N) I32
  Buffer pos_, docs_, cos_, sin_;      // (N) I32, (N) I32, (N, HS/2), (N, HS/2)
  Buffer suffix_idx_;                  // (2N) I32: the suffix rows' rope rows, then their doc ids
  Buffer xL_, hf_, rstdf_, dhf_, dx_;  // (N, C), (tile, C), (tile), (tile, C), (N, C)
  Buffer hidden_, hidden_rstd_;        // forward_hidden only: (N, C), (N)
  bool staged_ = false;                // the device tier is GPU memory
  std::vector<Buffer> staging_;        // host copies of labels_, pos_, docs_, cos_, sin_, suffix_idx_
  Memory* mem_ = nullptr;
  std::unique_ptr<ActBuffer> scratch_, grads_;  // rows not kept; backward scratch
  std::unique_ptr<SavedStore> saved_;           // L x (inp (N, C) + kept rows)
  BlockShared shared_;
  int64_t label_count_ = 0;
  SuffixRows suffix_;  // S = 0: the last block runs whole
  bool suffix_allowed_ = true;
  const LoraSet* adapters_ = nullptr;
  UnitHook* hook_ = nullptr;
  void unit_begin(int unit, bool weights, bool grads) {
    if (hook_) hook_->begin(unit, weights, grads);
  }
  void unit_end(int unit, bool weights, bool grads) {
    if (hook_) hook_->end(unit, weights, grads);
  }
  int head_unit() const { return int(c_.num_hidden_layers) + 1; }
};

}  // namespace longctx
