// ZeRO across the ranks of a data- or context-parallel run, on the flat
// vector of trained parameters (all weights, or the LoRA adapters):
//   stage 0: gradients all-reduced, every rank keeps the whole AdamW state;
//   stage 1: AdamW moments sharded: each rank updates its part of the weights,
//            then the parts are all-gathered;
//   stage 2: as 1, and gradients sharded: each block's gradients are
//            reduce-scattered as soon as its backward is done, so only one
//            block's (or the embedding's, or the head's) whole gradients are
//            ever held;
//   stage 3: as 2, and weights sharded: each block's weights are gathered
//            just before its forward (and again before its backward) and
//            dropped after; so are the embedding's and the head's.
// ShardMap says which part is whose. With LoRA (a small trained vector) stage
// 2 reduce-scatters the adapters' gradients after the pass and stage 3 is
// refused. On one rank every stage is stage 0, except with the weights off the
// device (`offload`): stage 3 on one rank whose shards (the whole weights,
// gradients and AdamW moments) live on the host, each unit's weights copied to
// the device before use and its gradients copied back and added after, the
// update and the norm computed by the CPU (ZeRO-Offload's layout).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/comm.h"
#include "core/context.h"
#include "core/disk_file.h"
#include "io/safetensors.h"
#include "model/params.h"
#include "model/unit_hook.h"
#include "ops/adamw.h"
#include "parallel/shard_map.h"

namespace longctx {

class ZeroShards : public UnitHook {
 public:
  // The stage that runs block by block (the constructor taking a ParamSet):
  // 2 or 3 for full training across ranks, else 0 (the flat vector). Checks
  // the stage, and refuses 3 with LoRA across ranks (on one rank every stage is 0).
  static int by_unit_stage(int zero, int ranks, bool lora);
  // A flat trained vector (LoRA adapters, or weights at stages 0-1): w, g
  // (n) whole on every rank, one unit; `tensors` are the named views inside w.
  ZeroShards(Tensor w, Tensor g, std::vector<NamedTensor> tensors, int stage, Comm& comm, Memory& mem);
  // Full training at stage 2 or 3: a unit per block. `whole` holds the
  // weights at stage 2 (and stays in use); at stage 3 it is only read by
  // take_weights() and may be freed after.
  // offload: one rank, `whole` on the host and kept (the shard is the whole vector, in place).
  ZeroShards(const LlamaConfig& c, ParamSet& whole, int stage, Comm& comm, Memory& mem, bool offload = false);
  ~ZeroShards() override;

  int stage() const { return stage_; }
  bool by_unit() const { return by_unit_; }
  bool offload() const { return offload_; }
  // Where the shards' arithmetic runs: the CPU when they are on the host (offload), else ctx.
  Context& shard_context(Context& ctx) { return offload_ ? host_ctx_ : ctx; }
  // What a step runs on: at stage 3 views bound unit by unit, else `whole`.
  const ParamSet& weights() const { return by_unit_ && stage_ == 3 ? *wviews_ : *whole_; }
  // The gradient sink of a step at stages 2-3 (views bound unit by unit).
  ParamSet* grad_views() const { return gviews_.get(); }
  UnitHook* hook() { return by_unit_ ? this : nullptr; }

  void zero_grads();
  void reduce_grads();                // after the last micro-batch (stages 0-1, and LoRA at 2)
  double grad_sq_norm(Context& ctx);  // of the reduced gradient, every rank the same
  void scale_grads(float s, Context& ctx);
  // this rank's weights out of `whole` (after init or loading; stage 3)
  void take_weights(const ParamSet& whole);
  // every rank's weights / gradients into a whole vector laid out as the
  // ParamSet (collective)
  void gather_weights(float* whole);
  void gather_grads(float* whole);
  // after an update of the shard: the whole weights rebuilt (stages 1-2)
  void refresh_weights();

  // this rank's part of the weights and gradients, and its pieces: one per
  // trained tensor it holds a part of (decay: a matrix, not a norm)
  Tensor g_shard() const { return gs_; }
  struct Piece {
    int64_t at, whole, n;  // in the shard, in the whole vector, length
    size_t tensor;         // of tensors()
    bool decay;
  };
  const std::vector<Piece>& pieces() const { return pieces_; }
  // The weights a piece updates: in the shard, or (stage 2 by unit) in place in the whole weights.
  Tensor weights_of(const Piece& q) const;
  const std::vector<NamedTensor>& tensors() const { return tensors_; }  // names and shapes
  const std::vector<int64_t>& offsets() const { return offsets_; }      // in the whole vector
  const ShardMap& map() const { return map_; }
  int64_t whole_size() const { return n_; }
  Comm& comm() { return comm_; }
  Memory& mem() { return mem_; }

  void begin(int unit, bool weights, bool grads) override;
  void end(int unit, bool weights, bool grads) override;

 private:
  void bind(ParamSet& views, int unit, float* to);
  void gather(const float* shard, float* whole);
  int stage_;
  bool by_unit_ = false;
  bool offload_ = false;
  Context host_ctx_;  // offload: the CPU, for the host shards
  Buffer gstage_;     // offload from GPU memory: a unit's gradients on their way to the host
  Comm& comm_;
  Memory& mem_;
  ShardMap map_;
  int64_t n_ = 0;
  std::vector<NamedTensor> tensors_;
  std::vector<int64_t> offsets_;
  std::vector<Piece> pieces_;
  Tensor w_, g_;                               // whole vectors (g_ undefined by unit)
  Tensor ws_, gs_;                             // this rank's shard
  Buffer wshard_, gshard_;                     // by unit: the shard's storage
  ParamSet* whole_ = nullptr;                  // by unit: the ParamSet given
  std::unique_ptr<ParamSet> wviews_, gviews_;  // by unit: views bound unit by unit
  std::vector<Buffer> wlive_, glive_;          // by unit: whole while in use
  void set_pieces();
};

// Where the AdamW moments live: with the shards (the device, or the host when the model is offloaded); in
// host memory, streamed through the device in slices during the update; or in a file (the disk tier),
// streamed through host slices (and the device's, when the shards are there).
// split: the first moment in host memory, the second in the file (half the disk's bytes).
enum class MomentsAt : uint8_t { shards, host, disk, split };

class ZeroOptimizer {
 public:
  // slice: elements streamed at a time (host, disk); dir: the disk's directory ("" : the temp directory).
  // Weights and gradients stay where the shards keep them; the update is the same bit for bit anywhere.
  ZeroOptimizer(ZeroShards& shards, Memory& mem, MomentsAt at = MomentsAt::shards,
                int64_t slice = int64_t(1) << 22, const std::string& dir = "");
  // AdamW on this rank's part (decay only on matrices), then the weights re-assembled.
  void step(AdamWParams p, float weight_decay, Context& ctx);
  // The whole moments as named tensors (m., v. as in checkpoints), gathered
  // into host scratch; load_state() takes this rank's part back from such tensors.
  void gather_state(std::vector<NamedTensor>& m, std::vector<NamedTensor>& v, Context& ctx);
  void load_state(const std::vector<NamedTensor>& m, const std::vector<NamedTensor>& v);

  // Sharded checkpoints, without gathering: each element of the trained vector
  // is written by exactly one rank (its pieces at stages 1-3; its 1/P of the
  // vector where every rank holds everything). `emit` gets host copies of the
  // weights and moments of [from, from + n) of tensors()[tensor], valid until
  // the next save_shard() (host copies where the state is in GPU memory). Not collective.
  using PieceSink = std::function<void(size_t tensor, int64_t from, int64_t n, const float* w, const float* m,
                                       const float* v)>;
  void save_shard(const PieceSink& emit, Context& ctx);
  // This rank's moments back, piece by piece: read(prefix "m." or "v.", tensor, from, n, dst).
  using PieceSource =
      std::function<void(const char* prefix, size_t tensor, int64_t from, int64_t n, float* dst)>;
  void load_shard(const PieceSource& read);

 private:
  ZeroShards& sh_;
  Buffer m_, v_;  // (shard); none on the disk
  int64_t slice_ = 0, n_ = 0;
  Buffer ms_, vs_;                  // (slice) their device slices
  std::unique_ptr<DiskFile> file_;  // disk: m then v, (shard) each; split: v
  bool split_ = false;              // m in m_ (host memory), v in the file
  Buffer mh_, vh_;                  // disk: (slice) host slices (split: vh_ only)
  // this rank's moments as host memory (disk: the file's mapping), or null when they are in GPU memory
  float* host_m() const;
  float* host_v() const;
  void put_moments(int64_t at, int64_t n, const float* m, const float* v);  // host -> this rank's [at, +n)
  int64_t v_at(int64_t at) const { return (split_ ? 0 : n_) + at; }  // where v's element `at` is in the file
  Buffer mfull_, vfull_;                                             // host scratch for checkpoints
  std::vector<Buffer> shard_copies_;                                 // save_shard's host copies of GPU memory
  Memory& mem_;
};

}  // namespace longctx
