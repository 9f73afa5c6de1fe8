// Ring and zigzag context parallelism. The sequence is cut into P chunks
// (ring: rank r holds chunk r) or 2P chunks (zigzag: rank r holds chunks r and
// 2P-1-r, so causal work is balanced). Every rank's K/V circulate around the
// ring with non-blocking send/recv overlapped with the attention on the block
// in hand; partial outputs merge by log-sum-exp in fp32. Backward circulates
// K/V again with their gradient accumulators, which arrive home after P hops.
#pragma once
#include <utility>
#include <vector>

#include "comm/comm.h"
#include "core/memory.h"
#include "model/block.h"

namespace longctx {

// Rows of the whole (padded) sequence that rank r holds, as (start, length)
// segments in local order, for a sequence of P * T_local tokens.
std::vector<std::pair<int64_t, int64_t>> cp_segments(bool zigzag, int P, int r, int64_t T_local);

class RingAttention : public AttentionRunner {
 public:
  RingAttention(const LlamaConfig& c, Comm& comm, Memory& mem, int64_t B, int64_t T_local, bool zigzag);
  void set_docs(const std::vector<int32_t>& docs, Context& ctx);  // (B, P*T_local), the same on every rank
  void forward(int64_t layer, const BlockActs& a, Context& ctx) override;
  void backward(int64_t layer, const BlockActs& a, const BlockGrads& g, Context& ctx) override;
  int64_t bytes_sent() const { return bytes_sent_; }  // since construction, this rank

 private:
  struct Seg {
    int64_t start, len, local;  // global start, length, first local row
  };
  // (B, len, H, HS) <-> rows [s.local, s.local + len) of (B, Tl, H, HS) (put: = or +=)
  void gather_rows(const Tensor& src, int64_t H, const Seg& s, const Tensor& dst, Context& ctx) const;
  void put_rows(const Tensor& src, int64_t H, const Seg& s, const Tensor& dst, Context& ctx,
                bool accumulate = false) const;
  void gather_lse(const Tensor& src, const Seg& s, const Tensor& dst,
                  Context& ctx) const;  // (B, NH, Tl) -> (B, NH, len)
  void scatter_lse(const Tensor& src, const Seg& s, const Tensor& dst, Context& ctx) const;
  Tensor docs_of(int rank, size_t segment) const;                                  // (B, L) of docs_
  static Tensor half(const Buffer& kv, int64_t i) { return kv.t().slice0(i, 1); }  // K (0) or V (1) of kv_
  AttentionParams params(int64_t layer, const Seg& q, int rq, size_t iq, const Seg& k, int rk,
                         size_t ik) const;
  void exchange(Buffer& cur, Buffer& next);

  LlamaConfig c_;
  Comm& comm_;
  int P_, r_;
  int64_t B_, Tl_, T_, seg_len_;
  std::vector<std::vector<Seg>> segs_;  // per rank
  Buffer kv_[2], dkv_[2];               // (2, B, Tl, NKV, HS): K then V (and their grads)
  Buffer q_, o_, lse_, dq_, k_, v_, dk_, dv_, dout_, ofull_, lsefull_;  // one segment each
  Buffer docs_;                                                         // (P, segments, B, L) I32
  int64_t bytes_sent_ = 0;
};

}  // namespace longctx
