#include "parallel/ring.h"

#include <cmath>

#include "core/check.h"
#include "ops/attention.h"
#include "ops/elementwise.h"

namespace longctx {

std::vector<std::pair<int64_t, int64_t>> cp_segments(bool zigzag, int P, int r, int64_t Tl) {
  if (!zigzag) return {{int64_t(r) * Tl, Tl}};
  CHECK(Tl % 2 == 0, "zigzag: ", Tl, " local tokens do not split into two chunks");
  const int64_t c = Tl / 2;
  return {{int64_t(r) * c, c}, {int64_t(2 * P - 1 - r) * c, c}};
}

RingAttention::RingAttention(const LlamaConfig& c, Comm& comm, Memory& mem, int64_t B, int64_t Tl,
                             bool zigzag)
    : c_(c), comm_(comm), P_(comm.size()), r_(comm.rank()), B_(B), Tl_(Tl), T_(Tl * comm.size()) {
  for (int x = 0; x < P_; x++) {
    std::vector<Seg> v;
    int64_t local = 0;
    for (auto [s, n] : cp_segments(zigzag, P_, x, Tl)) v.push_back({s, n, local}), local += n;
    segs_.push_back(v);
  }
  seg_len_ = segs_[0][0].len;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim, L = seg_len_;
  const Tier dev = Tier::device;
  for (int i = 0; i < 2; i++) {
    kv_[i] = Buffer(mem, dev, Tag::comm, {2, B, Tl, NKV, HS});
    dkv_[i] = Buffer(mem, dev, Tag::comm, {2, B, Tl, NKV, HS});
  }
  for (Buffer* b : {&q_, &o_, &dq_, &dout_, &ofull_}) *b = Buffer(mem, dev, Tag::comm, {B, L, NH, HS});
  for (Buffer* b : {&k_, &v_, &dk_, &dv_}) *b = Buffer(mem, dev, Tag::comm, {B, L, NKV, HS});
  lse_ = Buffer(mem, dev, Tag::comm, {B, NH, L});
  lsefull_ = Buffer(mem, dev, Tag::comm, {B, NH, L});
  // every rank's segments' document ids, (P, segments, B, L), set once per step
  docs_ = Buffer(mem, dev, Tag::comm, {P_, int64_t(segs_[0].size()), B, L}, DType::I32);
}

void RingAttention::set_docs(const std::vector<int32_t>& d, Context& ctx) {
  CHECK(int64_t(d.size()) == B_ * T_, "[ring] ", d.size(), " document ids for ", B_, " x ", T_, " tokens");
  const int64_t S = int64_t(segs_[0].size()), L = seg_len_;
  const Tensor all(const_cast<int32_t*>(d.data()), {B_, T_}, DType::I32);
  for (int x = 0; x < P_; x++)
    for (int64_t i = 0; i < S; i++)
      copy_rows({docs_.t(), (x * S + i) * B_ * L, L}, {all, segs_[size_t(x)][size_t(i)].start, T_}, B_, L,
                ctx);
}

Tensor RingAttention::docs_of(int x, size_t i) const {
  const int64_t S = int64_t(segs_[0].size());
  return docs_.t().view({P_ * S, B_, seg_len_}).slice0(x * S + int64_t(i), 1).view({B_, seg_len_});
}

void RingAttention::gather_rows(const Tensor& src, int64_t H, const Seg& s, const Tensor& dst,
                                Context& ctx) const {
  const int64_t row = H * c_.head_dim;
  copy_rows({dst, 0, s.len * row}, {src, s.local * row, Tl_ * row}, B_, s.len * row, ctx);
}

void RingAttention::put_rows(const Tensor& src, int64_t H, const Seg& s, const Tensor& dst, Context& ctx,
                             bool accumulate) const {
  const int64_t row = H * c_.head_dim;
  copy_rows({dst, s.local * row, Tl_ * row}, {src, 0, s.len * row}, B_, s.len * row, ctx, accumulate);
}

void RingAttention::gather_lse(const Tensor& src, const Seg& s, const Tensor& dst, Context& ctx) const {
  copy_rows({dst, 0, s.len}, {src, s.local, Tl_}, B_ * c_.num_attention_heads, s.len, ctx);
}

void RingAttention::scatter_lse(const Tensor& src, const Seg& s, const Tensor& dst, Context& ctx) const {
  copy_rows({dst, s.local, Tl_}, {src, 0, s.len}, B_ * c_.num_attention_heads, s.len, ctx);
}

AttentionParams RingAttention::params(int64_t layer, const Seg& q, int rq, size_t iq, const Seg& k, int rk,
                                      size_t ik) const {
  AttentionParams p;
  p.q_offset = q.start - k.start;  // segments are whole chunks: k wholly before q, or the same chunk
  p.causal = true;
  p.window = c_.window(layer);  // relative positions: the same offset serves the window
  p.q_doc = docs_of(rq, iq).view({B_, q.len});
  p.k_doc = docs_of(rk, ik).view({B_, k.len});
  return p;
}

void RingAttention::exchange(Buffer& cur, Buffer& next) {
  comm_.exchange_start(cur.f32(), (r_ + 1) % P_, next.f32(), (r_ - 1 + P_) % P_, cur.t().numel());
  bytes_sent_ += int64_t(cur.t().bytes());
}

void RingAttention::forward(int64_t layer, const BlockActs& a, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  copy_tensor(half(kv_[0], 0).view(a.k.shape), a.k, ctx);
  copy_tensor(half(kv_[0], 1).view(a.v.shape), a.v, ctx);
  fill_inplace(a.att, 0.f, ctx);
  fill_inplace(a.lse, -INFINITY, ctx);
  int cur = 0;
  for (int s = 0; s < P_; s++) {
    const int src = (r_ - s + P_) % P_;
    if (s + 1 < P_) exchange(kv_[cur], kv_[1 - cur]);  // the next block travels while this one computes
    const Tensor K = half(kv_[cur], 0), V = half(kv_[cur], 1);
    for (size_t iq = 0; iq < segs_[size_t(r_)].size(); iq++)
      for (size_t ik = 0; ik < segs_[size_t(src)].size(); ik++) {
        const Seg &q = segs_[size_t(r_)][iq], &k = segs_[size_t(src)][ik];
        if (k.start > q.start) continue;  // every key after every query
        gather_rows(a.q, NH, q, q_.t(), ctx);
        gather_rows(K, NKV, k, k_.t(), ctx);
        gather_rows(V, NKV, k, v_.t(), ctx);
        const AttentionParams p = params(layer, q, r_, iq, k, src, ik);
        const Shape qs{B_, q.len, NH, HS}, ks{B_, k.len, NKV, HS};
        attention_forward(o_.t().view(qs), lse_.t().view({B_, NH, q.len}), q_.t().view(qs), k_.t().view(ks),
                          v_.t().view(ks), p, ctx);
        // merge into this segment's rows of the block output
        gather_rows(a.att, NH, q, ofull_.t(), ctx);
        gather_lse(a.lse, q, lsefull_.t(), ctx);
        attention_merge(ofull_.t().view(qs), lsefull_.t().view({B_, NH, q.len}), o_.t().view(qs),
                        lse_.t().view({B_, NH, q.len}), ctx);
        put_rows(ofull_.t(), NH, q, a.att, ctx);
        scatter_lse(lsefull_.t(), q, a.lse, ctx);
      }
    comm_.exchange_wait();
    cur = 1 - cur;
  }
}

void RingAttention::backward(int64_t layer, const BlockActs& a, const BlockGrads& g, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  copy_tensor(half(kv_[0], 0).view(a.k.shape), a.k, ctx);
  copy_tensor(half(kv_[0], 1).view(a.v.shape), a.v, ctx);
  dkv_[0].zero();
  fill_inplace(g.dq, 0.f, ctx);
  int cur = 0;
  for (int s = 0; s < P_; s++) {
    const int src = (r_ - s + P_) % P_;
    if (s + 1 < P_) exchange(kv_[cur], kv_[1 - cur]);
    const Tensor K = half(kv_[cur], 0), V = half(kv_[cur], 1), dK = half(dkv_[cur], 0),
                 dV = half(dkv_[cur], 1);
    for (size_t iq = 0; iq < segs_[size_t(r_)].size(); iq++)
      for (size_t ik = 0; ik < segs_[size_t(src)].size(); ik++) {
        const Seg &q = segs_[size_t(r_)][iq], &k = segs_[size_t(src)][ik];
        if (k.start > q.start) continue;
        const Shape qs{B_, q.len, NH, HS}, ks{B_, k.len, NKV, HS};
        gather_rows(a.q, NH, q, q_.t(), ctx);
        gather_rows(K, NKV, k, k_.t(), ctx);
        gather_rows(V, NKV, k, v_.t(), ctx);
        gather_rows(a.att, NH, q, ofull_.t(), ctx);
        gather_rows(g.datt, NH, q, dout_.t(), ctx);
        gather_lse(a.lse, q, lsefull_.t(), ctx);
        const AttentionParams p = params(layer, q, r_, iq, k, src, ik);
        attention_backward(dq_.t().view(qs), dk_.t().view(ks), dv_.t().view(ks), dout_.t().view(qs),
                           q_.t().view(qs), k_.t().view(ks), v_.t().view(ks), ofull_.t().view(qs),
                           lsefull_.t().view({B_, NH, q.len}), p, ctx);
        put_rows(dq_.t(), NH, q, g.dq, ctx, true);
        put_rows(dk_.t(), NKV, k, dK, ctx, true);
        put_rows(dv_.t(), NKV, k, dV, ctx, true);
      }
    // this block's gradient accumulator moves on with it (P hops bring it home)
    exchange(dkv_[cur], dkv_[1 - cur]);
    comm_.exchange_wait();
    cur = 1 - cur;
  }
  copy_tensor(g.dk, half(dkv_[cur], 0).view(g.dk.shape), ctx);
  copy_tensor(g.dv, half(dkv_[cur], 1).view(g.dv.shape), ctx);
}

}  // namespace longctx
