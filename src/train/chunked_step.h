// Chunk-wise training (SeCO, SpaCO). The sequence is cut into k chunks that
// go through all blocks one at a time. Forward, chunks in order, fills every
// block's KV cache (whole sequence, on the offload tier); nothing else is kept.
// Backward, chunks in reverse: rerun chunk j (the plan's recompute policy
// inside it), take its loss gradient, and backpropagate; attention to earlier
// chunks reads their cached K/V page by page and adds into their cached K/V
// gradients, which chunk j itself picks up when its turn comes. Exact.
// SpaCO backpropagates only `chunk_budget` of the chunks, drawn at random,
// scaling by k / s: unbiased, and backward cost proportional to s.
// Across P ranks (Ulysses): every rank runs an equal slice of each chunk, an
// all-to-all gives it the whole chunk for NH/P heads, and the K/V cache of
// those heads stays on it; so activations and cache are 1/P of one rank's. With
// more ranks than KV heads, the ranks that receive the same KV heads each keep
// a part of every page of their cache (KvPages' shared heads).
// Ring: every rank runs its slice of each chunk with all heads and keeps that
// slice of every page; a chunk's and each earlier page's K/V are gathered from
// the ranks' slices before attention reads them, their gradients
// reduce-scattered back (any rank count that divides the chunk). Hybrid: the
// same ring across groups of ranks, on the heads Ulysses gives each rank of
// its group (the group's slice of the chunk).
#pragma once
#include <memory>
#include <vector>

#include "comm/comm.h"
#include "parallel/cp_kind.h"
#include "train/grad_step.h"

namespace longctx {

class KvPages;
class UlyssesAttention;
class SliceGather;

class ChunkedStep {
 public:
  // cp: the ranks of context parallelism (null or one rank: none); kind: ulysses, ring (all heads, the cache
  // in token slices) or hybrid (Ulysses inside groups of ulysses_group ranks, ring across the groups).
  ChunkedStep(const LlamaConfig& c, Memory& mem, int64_t T, const Plan& plan, Comm* cp = nullptr,
              CpKind kind = CpKind::ulysses, int ulysses_group = 1);
  ~ChunkedStep();
  const StepLayout& layout() const { return lay_; }
  // As GradStep::run: a batch's rows go one after another through the same
  // caches, under one normaliser (the batch's labels). `draw` seeds SpaCO's choice.
  double run(const ParamSet& w, const Grads& grads, const StepInput& in, Context& ctx, double label_norm = 0,
             uint64_t draw = 0);
  void set_adapters(const LoraSet* a) { step_->set_adapters(a); }
  void set_unit_hook(UnitHook* h) { step_->set_unit_hook(h); }
  int64_t cp_bytes_sent() const;  // this rank's all-to-all bytes, so far
  int64_t kv_pages_read() const;  // earlier K/V pages attention read, so far (none outside a window)
  int64_t label_count() const { return label_count_; }
  // The chunks SpaCO backpropagates for `draw` (all of them under SeCO).
  std::vector<int64_t> chosen_chunks(uint64_t draw) const;
  int64_t chunks() const { return k_; }

  // Probe mode (a length whose whole step takes too long): only these chunks run, forward and backward; the
  // other chunks' K/V pages stay allocated but are never written, so the loss and gradients are meaningless
  // while every tier holds what the full step holds and the chunks that run do all their work (the last
  // chunk attends to every page). Empty: every chunk (the default).
  void set_only_chunks(std::vector<int64_t> chunks) { only_ = std::move(chunks); }
  // Probe mode: wall seconds of each chunk's forward (the first pass) and backward (its rerun with grad) in
  // the last run's last row, after the backend finished its work (synchronised); -1 for a chunk that did
  // not run, and for every chunk outside probe mode (no synchronisation there).
  struct ChunkTiming {
    double forward_s = -1, backward_s = -1;
  };
  const std::vector<ChunkTiming>& chunk_timings() const { return timings_; }

 private:
  StepInput chunk_input(int64_t j, const StepInput& in);
  double run_row(const ParamSet& w, const Grads& grads, const StepInput& in, Context& ctx, double label_norm,
                 uint64_t draw);

  LlamaConfig c_;
  StepLayout lay_;
  int64_t k_ = 0;  // chunks
  Comm* cp_ = nullptr;
  int P_ = 1, r_ = 0;
  int64_t Tl_ = 0;                      // this rank's slice of a chunk (Tc / P)
  std::unique_ptr<Comm> share_;         // the ranks that share this rank's KV heads' cache (null: none)
  std::unique_ptr<Comm> group_, ring_;  // hybrid: this rank's Ulysses group, and the ring across groups
  std::unique_ptr<KvPages> kv_;
  std::unique_ptr<UlyssesAttention> ulysses_;
  std::unique_ptr<SliceGather> slices_;  // ring and hybrid: the chunk's K/V gathered from token slices
  std::unique_ptr<GradStep> step_;
  std::vector<int32_t> pos_, doc_;  // (T) the whole sequence's positions and document ids
  std::vector<int32_t> chunk_tok_, chunk_lab_, chunk_pos_, chunk_doc_;  // (Tc) the chunk being run
  int64_t label_count_ = 0;
  std::vector<int64_t> only_;         // probe mode: the chunks that run (empty: all)
  std::vector<ChunkTiming> timings_;  // (k) of the last row
  bool runs(int64_t j) const;
};

}  // namespace longctx
