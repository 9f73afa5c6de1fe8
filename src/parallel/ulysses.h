// Ulysses context parallelism (and UPipe, Ulysses a head group at a time): each of P ranks holds T/P tokens
// of every sequence with all heads; attention needs all tokens of some heads. An all-to-all turns (B, T/P,
// NH, HS) into (B, T, NH/P, HS), flash attention runs on the whole sequence for this rank's heads, and an
// all-to-all brings the output back. Query heads must divide by P. KV heads: NKV/P each when P divides NKV;
// otherwise a rank whose query heads all belong to one KV head's group gets that head once (GQA inside the
// rank), and any other rank a copy of the KV head of each of its query heads; the gradients of the copies
// are summed back. UPipe runs the same exchange one query head per rank at a time, so only one group's
// head-sharded buffers are ever live (1/(NH/P) of Ulysses').
#pragma once
#include <vector>

#include "comm/comm.h"
#include "core/memory.h"
#include "model/block.h"

namespace longctx {

class UlyssesAttention : public AttentionRunner {
 public:
  // B sequences of T_local tokens on this rank (T = P * T_local).
  // upipe: UPipe, one query head per rank at a time (buffers of one head group live).
  UlyssesAttention(const LlamaConfig& c, Comm& comm, Memory& mem, int64_t B, int64_t T_local,
                   bool upipe = false);
  // Document ids of the whole (padded) sequences (B, T), the same on every rank.
  void set_docs(const std::vector<int32_t>& docs, Context& ctx);
  void forward(int64_t layer, const BlockActs& a, Context& ctx) override;
  void backward(int64_t layer, const BlockActs& a, const BlockGrads& g, Context& ctx) override;
  // Chunked training: this block's K/V sent head-sharded to `inner`, which keeps them.
  void store_kv(int64_t layer, const BlockActs& a, Context& ctx) override;
  static void check_layout(const LlamaConfig& c, int P);  // throws saying why a layout cannot work
  int64_t bytes_sent() const { return bytes_sent_; }      // to other ranks, since construction
  // Hybrid and chunked training: attention over the head-sharded sequence is
  // done by `inner` (ring attention across groups; the chunk's K/V cache)
  // instead of locally. Heads per rank of one group, and KV heads (copies
  // included), for configuring it:
  void set_inner(AttentionRunner* inner) { inner_ = inner; }
  int64_t group_heads() const { return Gs_; }
  int64_t group_kv_heads() const { return m_; }
  // The KV heads (copies included) each rank d receives, [d] (Ulysses: one group).
  const std::vector<std::vector<int64_t>>& kv_heads_of_ranks() const { return kvheads_[0]; }
  // Chunks across ranks: how many ranks at least receive the same KV heads as one rank does (1 when the ranks
  // do not outnumber the KV heads), so that they can share the storage of those heads' K/V cache.
  static int kv_sharing_ranks(const LlamaConfig& c, int P);
  // The KV heads (copies included) each of P Ulysses ranks receives, group_kv_heads() of such a runner:
  // NKV/P; one when the rank's query heads are all in one KV head's group; else a copy per query head.
  static int64_t kv_heads_per_rank(const LlamaConfig& c, int P);

 private:
  // local (B, Tl, H, HS) rows of heads `heads[d]` -> block d of send; recv -> (B, T, m, HS)
  void scatter_heads(const Tensor& local, int64_t H, const std::vector<std::vector<int64_t>>& heads,
                     Tensor sharded, Context& ctx);
  // the inverse; accumulate sums the copies of a replicated head
  void gather_heads(const Tensor& sharded, int64_t H, const std::vector<std::vector<int64_t>>& heads,
                    Tensor local, bool accumulate, Context& ctx);
  // (B, Gs, T) of the group's heads <-> (B, NH, Tl)
  void lse_to_local(const Tensor& sharded, const std::vector<std::vector<int64_t>>& heads, Tensor local,
                    Context& ctx);
  void lse_to_sharded(const Tensor& local, const std::vector<std::vector<int64_t>>& heads, Tensor sharded,
                      Context& ctx);
  void exchange(int64_t blk);  // send_ -> recv_, blocks of blk floats

  LlamaConfig c_;
  Comm& comm_;
  int P_, r_;
  int64_t B_, Tl_, T_, NHr_, Gs_, m_;  // Gs_: query heads per rank per group; m_: KV heads per rank per group
  bool copies_ = false;                // KV heads sent as one copy per query head
  std::vector<std::vector<std::vector<int64_t>>> qheads_, kvheads_;  // [group][rank d]: the global heads
  Buffer q_, k_, v_, o_, lse_, dq_, dk_, dv_, dout_;  // head-sharded (B, T, *, HS), lse (B, NHr, T)
  Buffer send_, recv_, docs_;
  int64_t bytes_sent_ = 0;
  AttentionRunner* inner_ = nullptr;
  // the head-sharded buffers as the block rows an inner runner reads
  BlockActs sharded_acts() const;
};

}  // namespace longctx
