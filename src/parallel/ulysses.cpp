#include "parallel/ulysses.h"

#include <algorithm>

#include "core/check.h"
#include "ops/attention.h"
#include "ops/elementwise.h"

namespace longctx {

void UlyssesAttention::check_layout(const LlamaConfig& c, int P) {
  CHECK(c.num_attention_heads % P == 0, "cp-kind ulysses: ", c.num_attention_heads,
        " query heads do not divide over ", P, " ranks (use a rank count that divides them)");
}

int64_t UlyssesAttention::kv_heads_per_rank(const LlamaConfig& c, int P) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, NHr = NH / P;
  if (NKV % P == 0) return NKV / P;
  return NHr > 0 && (NH / NKV) % NHr == 0 ? 1 : NHr;  // (NHr 0: a layout check_layout refuses)
}

int UlyssesAttention::kv_sharing_ranks(const LlamaConfig& c, int P) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, G = NH / NKV;
  if (P <= 1 || NKV % P == 0 || NH % P != 0) return 1;
  const int64_t NHr = NH / P;
  auto heads = [&](int d) {  // as the constructor assigns them (the query heads' KV heads)
    std::vector<int64_t> kv;
    for (int64_t i = 0; i < NHr; i++) kv.push_back((d * NHr + i) / G);
    if (G % NHr == 0) kv.resize(1);  // every query head of the rank is in one KV head's group: one copy
    return kv;
  };
  int least = P;
  for (int d = 0; d < P; d++) {
    int same = 0;
    for (int e = 0; e < P; e++) same += heads(e) == heads(d);
    least = std::min(least, same);
  }
  return least;
}

UlyssesAttention::UlyssesAttention(const LlamaConfig& c, Comm& comm, Memory& mem, int64_t B, int64_t T_local,
                                   bool upipe)
    : c_(c), comm_(comm), P_(comm.size()), r_(comm.rank()), B_(B), Tl_(T_local), T_(T_local * comm.size()) {
  check_layout(c, P_);
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, G = NH / NKV, HS = c.head_dim;
  NHr_ = NH / P_;
  // UPipe: one query head per rank at a time (NHr groups); Ulysses: all of them at once
  const int64_t groups = upipe ? NHr_ : 1, Gs = NHr_ / groups;
  copies_ = upipe || NKV % P_ != 0;
  for (int64_t g = 0; g < groups; g++) {
    std::vector<std::vector<int64_t>> qg, kvg;
    for (int d = 0; d < P_; d++) {
      std::vector<int64_t> q, kv;
      for (int64_t i = 0; i < Gs; i++) q.push_back(d * NHr_ + g * Gs + i);
      if (!copies_)
        for (int64_t j = 0; j < NKV / P_; j++) kv.push_back(d * (NKV / P_) + j);
      else if (G % Gs == 0)  // the rank's query heads are all in one KV head's group: that head, once
        kv.push_back(q[0] / G);
      else  // a copy of the KV head of each query head (K/V were projected once, before)
        for (int64_t h : q) kv.push_back(h / G);
      qg.push_back(q), kvg.push_back(kv);
    }
    qheads_.push_back(qg), kvheads_.push_back(kvg);
  }
  Gs_ = Gs;
  m_ = int64_t(kvheads_[0][0].size());
  const Tier dev = Tier::device;
  for (Buffer* b : {&q_, &o_, &dq_, &dout_}) *b = Buffer(mem, dev, Tag::comm, {B, T_, Gs_, HS});
  for (Buffer* b : {&k_, &v_, &dk_, &dv_}) *b = Buffer(mem, dev, Tag::comm, {B, T_, m_, HS});
  lse_ = Buffer(mem, dev, Tag::comm, {B, Gs_, T_});
  const int64_t block = B * Tl_ * std::max(Gs_, m_) * HS;
  send_ = Buffer(mem, dev, Tag::comm, {P_ * block});
  recv_ = Buffer(mem, dev, Tag::comm, {P_ * block});
  docs_ = Buffer(mem, dev, Tag::comm, {B, T_}, DType::I32);
}

void UlyssesAttention::set_docs(const std::vector<int32_t>& d, Context& ctx) {
  CHECK(int64_t(d.size()) == B_ * T_, "[ulysses] ", d.size(), " document ids for ", B_, " x ", T_, " tokens");
  copy_tensor(docs_.t(), Tensor(const_cast<int32_t*>(d.data()), {B_, T_}, DType::I32), ctx);
}

void UlyssesAttention::exchange(int64_t blk) {
  // (a Comm on device buffers orders itself after the packing on the compute stream)
  comm_.all_to_all(send_.f32(), recv_.f32(), blk);
  bytes_sent_ += (P_ - 1) * blk * 4;
}

void UlyssesAttention::scatter_heads(const Tensor& local, int64_t H,
                                     const std::vector<std::vector<int64_t>>& heads, Tensor sharded,
                                     Context& ctx) {
  const int64_t HS = c_.head_dim, m = int64_t(heads[0].size()), blk = B_ * Tl_ * m * HS;
  for (int d = 0; d < P_; d++)  // block d: (B, Tl, m, HS), head j of it from local's head heads[d][j]
    for (int64_t b = 0; b < B_; b++)
      for (int64_t j = 0; j < m; j++)
        copy_rows({send_.t(), d * blk + (b * Tl_ * m + j) * HS, m * HS},
                  {local, (b * Tl_ * H + heads[size_t(d)][size_t(j)]) * HS, H * HS}, Tl_, HS, ctx);
  exchange(blk);
  for (int sr = 0; sr < P_; sr++)  // from rank sr: its tokens [sr*Tl, (sr+1)*Tl) of every sequence
    copy_rows({sharded, sr * Tl_ * m * HS, T_ * m * HS}, {recv_.t(), sr * blk, Tl_ * m * HS}, B_,
              Tl_ * m * HS, ctx);
}

void UlyssesAttention::gather_heads(const Tensor& sharded, int64_t H,
                                    const std::vector<std::vector<int64_t>>& heads, Tensor local,
                                    bool accumulate, Context& ctx) {
  const int64_t HS = c_.head_dim, m = int64_t(heads[0].size()), blk = B_ * Tl_ * m * HS;
  for (int d = 0; d < P_; d++)  // to rank d: its tokens, my heads
    copy_rows({send_.t(), d * blk, Tl_ * m * HS}, {sharded, d * Tl_ * m * HS, T_ * m * HS}, B_, Tl_ * m * HS,
              ctx);
  exchange(blk);
  for (int sr = 0; sr < P_; sr++)
    for (int64_t b = 0; b < B_; b++)
      for (int64_t j = 0; j < m; j++)
        copy_rows({local, (b * Tl_ * H + heads[size_t(sr)][size_t(j)]) * HS, H * HS},
                  {recv_.t(), sr * blk + (b * Tl_ * m + j) * HS, m * HS}, Tl_, HS, ctx, accumulate);
}

void UlyssesAttention::lse_to_local(const Tensor& sharded, const std::vector<std::vector<int64_t>>& heads,
                                    Tensor local, Context& ctx) {
  const int64_t Gs = int64_t(heads[0].size()), blk = B_ * Gs * Tl_, NH = c_.num_attention_heads;
  for (int d = 0; d < P_; d++)  // (B, Gs) rows of rank d's Tl tokens
    copy_rows({send_.t(), d * blk, Tl_}, {sharded, d * Tl_, T_}, B_ * Gs, Tl_, ctx);
  exchange(blk);
  for (int sr = 0; sr < P_; sr++)
    for (int64_t h = 0; h < Gs; h++)
      copy_rows({local, heads[size_t(sr)][size_t(h)] * Tl_, NH * Tl_},
                {recv_.t(), sr * blk + h * Tl_, Gs * Tl_}, B_, Tl_, ctx);
}

void UlyssesAttention::lse_to_sharded(const Tensor& local, const std::vector<std::vector<int64_t>>& heads,
                                      Tensor sharded, Context& ctx) {
  const int64_t Gs = int64_t(heads[0].size()), blk = B_ * Gs * Tl_, NH = c_.num_attention_heads;
  for (int d = 0; d < P_; d++)
    for (int64_t h = 0; h < Gs; h++)
      copy_rows({send_.t(), d * blk + h * Tl_, Gs * Tl_},
                {local, heads[size_t(d)][size_t(h)] * Tl_, NH * Tl_}, B_, Tl_, ctx);
  exchange(blk);
  for (int sr = 0; sr < P_; sr++)
    copy_rows({sharded, sr * Tl_, T_}, {recv_.t(), sr * blk, Tl_}, B_ * Gs, Tl_, ctx);
}

BlockActs UlyssesAttention::sharded_acts() const {
  BlockActs h{};
  const int64_t HS = c_.head_dim, n = B_ * T_;
  h.q = q_.t().view({n, Gs_ * HS}), h.k = k_.t().view({n, m_ * HS}), h.v = v_.t().view({n, m_ * HS});
  h.att = o_.t().view({n, Gs_ * HS}), h.lse = lse_.t();
  return h;
}

void UlyssesAttention::forward(int64_t layer, const BlockActs& a, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  AttentionParams p;
  p.q_doc = p.k_doc = docs_.t();
  p.window = c_.window(layer);
  for (size_t g = 0; g < qheads_.size(); g++) {  // UPipe: one head group's buffers live at a time
    scatter_heads(a.q.view({B_, Tl_, NH, HS}), NH, qheads_[g], q_.t(), ctx);
    scatter_heads(a.k.view({B_, Tl_, NKV, HS}), NKV, kvheads_[g], k_.t(), ctx);
    scatter_heads(a.v.view({B_, Tl_, NKV, HS}), NKV, kvheads_[g], v_.t(), ctx);
    if (inner_)
      inner_->forward(layer, sharded_acts(), ctx);
    else
      attention_forward(o_.t(), lse_.t(), q_.t(), k_.t(), v_.t(), p, ctx);
    gather_heads(o_.t(), NH, qheads_[g], a.att.view({B_, Tl_, NH, HS}), false, ctx);
    lse_to_local(lse_.t(), qheads_[g], a.lse, ctx);
  }
}

void UlyssesAttention::store_kv(int64_t layer, const BlockActs& a, Context& ctx) {
  CHECK(inner_, "[ulysses] store_kv needs an inner runner that keeps K/V");
  const int64_t NKV = c_.num_key_value_heads, HS = c_.head_dim;
  for (size_t g = 0; g < kvheads_.size(); g++) {
    scatter_heads(a.k.view({B_, Tl_, NKV, HS}), NKV, kvheads_[g], k_.t(), ctx);
    scatter_heads(a.v.view({B_, Tl_, NKV, HS}), NKV, kvheads_[g], v_.t(), ctx);
    inner_->store_kv(layer, sharded_acts(), ctx);
  }
}

void UlyssesAttention::backward(int64_t layer, const BlockActs& a, const BlockGrads& g, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  AttentionParams p;
  p.q_doc = p.k_doc = docs_.t();
  p.window = c_.window(layer);
  if (copies_) {  // copies of a KV head (and groups) add into its gradient
    fill_inplace(g.dk, 0.f, ctx);
    fill_inplace(g.dv, 0.f, ctx);
  }
  for (size_t h = 0; h < qheads_.size(); h++) {
    scatter_heads(a.q.view({B_, Tl_, NH, HS}), NH, qheads_[h], q_.t(), ctx);
    scatter_heads(a.k.view({B_, Tl_, NKV, HS}), NKV, kvheads_[h], k_.t(), ctx);
    scatter_heads(a.v.view({B_, Tl_, NKV, HS}), NKV, kvheads_[h], v_.t(), ctx);
    scatter_heads(a.att.view({B_, Tl_, NH, HS}), NH, qheads_[h], o_.t(), ctx);
    scatter_heads(g.datt.view({B_, Tl_, NH, HS}), NH, qheads_[h], dout_.t(), ctx);
    lse_to_sharded(a.lse, qheads_[h], lse_.t(), ctx);
    if (inner_) {
      const int64_t n = B_ * T_;
      BlockGrads hg{};
      hg.datt = dout_.t().view({n, Gs_ * HS}), hg.dq = dq_.t().view({n, Gs_ * HS});
      hg.dk = dk_.t().view({n, m_ * HS}), hg.dv = dv_.t().view({n, m_ * HS});
      inner_->backward(layer, sharded_acts(), hg, ctx);
    } else {
      attention_backward(dq_.t(), dk_.t(), dv_.t(), dout_.t(), q_.t(), k_.t(), v_.t(), o_.t(), lse_.t(), p,
                         ctx);
    }
    gather_heads(dq_.t(), NH, qheads_[h], g.dq.view({B_, Tl_, NH, HS}), false, ctx);
    gather_heads(dk_.t(), NKV, kvheads_[h], g.dk.view({B_, Tl_, NKV, HS}), copies_, ctx);
    gather_heads(dv_.t(), NKV, kvheads_[h], g.dv.view({B_, Tl_, NKV, HS}), copies_, ctx);
  }
}

}  // namespace longctx
