#include "parallel/ring.h"

#include <cmath>
#include <cstring>

#include "core/check.h"
#include "ops/attention.h"

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
  docq_ = Buffer(mem, dev, Tag::comm, {B, L}, DType::I32);
  dock_ = Buffer(mem, dev, Tag::comm, {B, L}, DType::I32);
}

void RingAttention::set_docs(const std::vector<int32_t>& d) {
  CHECK(int64_t(d.size()) == B_ * T_, "[ring] ", d.size(), " document ids for ", B_, " x ", T_, " tokens");
  docs_.assign(size_t(P_), {});
  for (int x = 0; x < P_; x++)
    for (const Seg& s : segs_[size_t(x)]) {
      std::vector<int32_t> v(size_t(B_ * s.len));
      for (int64_t b = 0; b < B_; b++)
        std::memcpy(&v[size_t(b * s.len)], &d[size_t(b * T_ + s.start)], size_t(s.len) * 4);
      docs_[size_t(x)].push_back(v);
    }
}

void RingAttention::gather_rows(const float* src, int64_t H, const Seg& s, float* dst) const {
  const int64_t row = H * c_.head_dim;
  for (int64_t b = 0; b < B_; b++)
    std::memcpy(dst + b * s.len * row, src + (b * Tl_ + s.local) * row, size_t(s.len * row) * 4);
}

void RingAttention::add_rows(const float* src, int64_t H, const Seg& s, float* dst) const {
  const int64_t row = H * c_.head_dim;
  for (int64_t b = 0; b < B_; b++) {
    float* d = dst + (b * Tl_ + s.local) * row;
    const float* x = src + b * s.len * row;
    for (int64_t i = 0; i < s.len * row; i++) d[i] += x[i];
  }
}

void RingAttention::gather_lse(const float* src, const Seg& s, float* dst) const {
  const int64_t NH = c_.num_attention_heads;
  for (int64_t b = 0; b < B_; b++)
    for (int64_t h = 0; h < NH; h++)
      std::memcpy(dst + (b * NH + h) * s.len, src + (b * NH + h) * Tl_ + s.local, size_t(s.len) * 4);
}

void RingAttention::scatter_lse(const float* src, const Seg& s, float* dst) const {
  const int64_t NH = c_.num_attention_heads;
  for (int64_t b = 0; b < B_; b++)
    for (int64_t h = 0; h < NH; h++)
      std::memcpy(dst + (b * NH + h) * Tl_ + s.local, src + (b * NH + h) * s.len, size_t(s.len) * 4);
}

AttentionParams RingAttention::params(int64_t layer, const Seg& q, int rq, size_t iq, const Seg& k, int rk,
                                      size_t ik) const {
  AttentionParams p;
  p.q_offset = q.start - k.start;  // segments are whole chunks: k wholly before q, or the same chunk
  p.causal = true;
  p.window = c_.window(layer);  // relative positions: the same offset serves the window
  std::memcpy(docq_.t().ptr, docs_[size_t(rq)][iq].data(), size_t(B_ * q.len) * 4);
  std::memcpy(dock_.t().ptr, docs_[size_t(rk)][ik].data(), size_t(B_ * k.len) * 4);
  p.q_doc = docq_.t().view({B_, q.len});
  p.k_doc = dock_.t().view({B_, k.len});
  return p;
}

void RingAttention::exchange(Buffer& cur, Buffer& next) {
  comm_.exchange_start(cur.f32(), (r_ + 1) % P_, next.f32(), (r_ - 1 + P_) % P_, cur.t().numel());
  bytes_sent_ += int64_t(cur.t().bytes());
}

void RingAttention::forward(int64_t layer, const BlockActs& a, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  const int64_t kvn = B_ * Tl_ * NKV * HS;
  std::memcpy(kv_[0].f32(), a.k.f32(), size_t(kvn) * 4);
  std::memcpy(kv_[0].f32() + kvn, a.v.f32(), size_t(kvn) * 4);
  std::memset(a.att.ptr, 0, a.att.bytes());
  std::fill(a.lse.f32(), a.lse.f32() + a.lse.numel(), -INFINITY);
  int cur = 0;
  for (int s = 0; s < P_; s++) {
    const int src = (r_ - s + P_) % P_;
    if (s + 1 < P_) exchange(kv_[cur], kv_[1 - cur]);  // the next block travels while this one computes
    const float* K = kv_[cur].f32();
    for (size_t iq = 0; iq < segs_[size_t(r_)].size(); iq++)
      for (size_t ik = 0; ik < segs_[size_t(src)].size(); ik++) {
        const Seg &q = segs_[size_t(r_)][iq], &k = segs_[size_t(src)][ik];
        if (k.start > q.start) continue;  // every key after every query
        gather_rows(a.q.f32(), NH, q, q_.f32());
        gather_rows(K, NKV, k, k_.f32());
        gather_rows(K + kvn, NKV, k, v_.f32());
        const AttentionParams p = params(layer, q, r_, iq, k, src, ik);
        const Shape qs{B_, q.len, NH, HS}, ks{B_, k.len, NKV, HS};
        attention_forward(o_.t().view(qs), lse_.t().view({B_, NH, q.len}), q_.t().view(qs), k_.t().view(ks),
                          v_.t().view(ks), p, ctx);
        // merge into this segment's rows of the block output
        gather_rows(a.att.f32(), NH, q, ofull_.f32());
        gather_lse(a.lse.f32(), q, lsefull_.f32());
        attention_merge(ofull_.t().view(qs), lsefull_.t().view({B_, NH, q.len}), o_.t().view(qs),
                        lse_.t().view({B_, NH, q.len}), ctx);
        for (int64_t b = 0; b < B_; b++)
          std::memcpy(a.att.f32() + (b * Tl_ + q.local) * NH * HS, ofull_.f32() + b * q.len * NH * HS,
                      size_t(q.len * NH * HS) * 4);
        scatter_lse(lsefull_.f32(), q, a.lse.f32());
      }
    comm_.exchange_wait();
    cur = 1 - cur;
  }
}

void RingAttention::backward(int64_t layer, const BlockActs& a, const BlockGrads& g, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  const int64_t kvn = B_ * Tl_ * NKV * HS;
  std::memcpy(kv_[0].f32(), a.k.f32(), size_t(kvn) * 4);
  std::memcpy(kv_[0].f32() + kvn, a.v.f32(), size_t(kvn) * 4);
  dkv_[0].zero();
  std::memset(g.dq.ptr, 0, g.dq.bytes());
  int cur = 0;
  for (int s = 0; s < P_; s++) {
    const int src = (r_ - s + P_) % P_;
    if (s + 1 < P_) exchange(kv_[cur], kv_[1 - cur]);
    const float* K = kv_[cur].f32();
    float* dK = dkv_[cur].f32();
    for (size_t iq = 0; iq < segs_[size_t(r_)].size(); iq++)
      for (size_t ik = 0; ik < segs_[size_t(src)].size(); ik++) {
        const Seg &q = segs_[size_t(r_)][iq], &k = segs_[size_t(src)][ik];
        if (k.start > q.start) continue;
        const Shape qs{B_, q.len, NH, HS}, ks{B_, k.len, NKV, HS};
        gather_rows(a.q.f32(), NH, q, q_.f32());
        gather_rows(K, NKV, k, k_.f32());
        gather_rows(K + kvn, NKV, k, v_.f32());
        gather_rows(a.att.f32(), NH, q, ofull_.f32());
        gather_rows(g.datt.f32(), NH, q, dout_.f32());
        gather_lse(a.lse.f32(), q, lsefull_.f32());
        const AttentionParams p = params(layer, q, r_, iq, k, src, ik);
        attention_backward(dq_.t().view(qs), dk_.t().view(ks), dv_.t().view(ks), dout_.t().view(qs),
                           q_.t().view(qs), k_.t().view(ks), v_.t().view(ks), ofull_.t().view(qs),
                           lsefull_.t().view({B_, NH, q.len}), p, ctx);
        add_rows(dq_.f32(), NH, q, g.dq.f32());
        add_rows(dk_.f32(), NKV, k, dK);
        add_rows(dv_.f32(), NKV, k, dK + kvn);
      }
    // this block's gradient accumulator moves on with it (P hops bring it home)
    exchange(dkv_[cur], dkv_[1 - cur]);
    comm_.exchange_wait();
    cur = 1 - cur;
  }
  std::memcpy(g.dk.f32(), dkv_[cur].f32(), size_t(kvn) * 4);
  std::memcpy(g.dv.f32(), dkv_[cur].f32() + kvn, size_t(kvn) * 4);
}

}  // namespace longctx
