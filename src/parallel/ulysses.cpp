#include "parallel/ulysses.h"

#include <cstring>

#include "core/check.h"
#include "ops/attention.h"

namespace longctx {

void UlyssesAttention::check_layout(const LlamaConfig& c, int P) {
  CHECK(c.num_attention_heads % P == 0, "cp-kind ulysses: ", c.num_attention_heads,
        " query heads do not divide over ", P, " ranks (use a rank count that divides them)");
}

UlyssesAttention::UlyssesAttention(const LlamaConfig& c, Comm& comm, Memory& mem, int64_t B, int64_t T_local)
    : c_(c), comm_(comm), P_(comm.size()), r_(comm.rank()), B_(B), Tl_(T_local), T_(T_local * comm.size()) {
  check_layout(c, P_);
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, G = NH / NKV, HS = c.head_dim;
  NHr_ = NH / P_;
  for (int d = 0; d < P_; d++) {
    std::vector<int64_t> q, kv;
    for (int64_t i = 0; i < NHr_; i++) q.push_back(d * NHr_ + i);
    if (NKV % P_ == 0)
      for (int64_t j = 0; j < NKV / P_; j++) kv.push_back(d * (NKV / P_) + j);
    else  // a copy of the KV head of each query head
      for (int64_t h : q) kv.push_back(h / G);
    qheads_.push_back(q), kvheads_.push_back(kv);
  }
  m_ = int64_t(kvheads_[0].size());
  const Tier dev = Tier::device;
  for (Buffer* b : {&q_, &o_, &dq_, &dout_}) *b = Buffer(mem, dev, Tag::comm, {B, T_, NHr_, HS});
  for (Buffer* b : {&k_, &v_, &dk_, &dv_}) *b = Buffer(mem, dev, Tag::comm, {B, T_, m_, HS});
  lse_ = Buffer(mem, dev, Tag::comm, {B, NHr_, T_});
  const int64_t block = B * Tl_ * std::max(NHr_, m_) * HS;
  send_ = Buffer(mem, dev, Tag::comm, {P_ * block});
  recv_ = Buffer(mem, dev, Tag::comm, {P_ * block});
  docs_ = Buffer(mem, dev, Tag::comm, {B, T_}, DType::I32);
}

void UlyssesAttention::set_docs(const std::vector<int32_t>& d) {
  CHECK(int64_t(d.size()) == B_ * T_, "[ulysses] ", d.size(), " document ids for ", B_, " x ", T_, " tokens");
  std::memcpy(docs_.t().ptr, d.data(), d.size() * 4);
}

void UlyssesAttention::scatter_heads(const Tensor& local, int64_t H, const std::vector<std::vector<int64_t>>& heads,
                                     Tensor sharded) {
  const int64_t HS = c_.head_dim, m = int64_t(heads[0].size()), blk = B_ * Tl_ * m * HS;
  const float* src = local.f32();
  float* s = send_.f32();
  for (int d = 0; d < P_; d++)  // block d: (B, Tl, m, HS)
    for (int64_t b = 0; b < B_; b++)
      for (int64_t t = 0; t < Tl_; t++)
        for (int64_t j = 0; j < m; j++)
          std::memcpy(s + d * blk + ((b * Tl_ + t) * m + j) * HS, src + ((b * Tl_ + t) * H + heads[size_t(d)][size_t(j)]) * HS,
                      size_t(HS) * 4);
  comm_.all_to_all(s, recv_.f32(), blk);
  bytes_sent_ += (P_ - 1) * blk * 4;
  const float* r = recv_.f32();
  float* dst = sharded.f32();
  for (int sr = 0; sr < P_; sr++)  // from rank sr: its tokens [sr*Tl, (sr+1)*Tl)
    for (int64_t b = 0; b < B_; b++)
      std::memcpy(dst + (b * T_ + sr * Tl_) * m * HS, r + sr * blk + b * Tl_ * m * HS, size_t(Tl_ * m * HS) * 4);
}

void UlyssesAttention::gather_heads(const Tensor& sharded, int64_t H, const std::vector<std::vector<int64_t>>& heads,
                                    Tensor local, bool accumulate) {
  const int64_t HS = c_.head_dim, m = int64_t(heads[0].size()), blk = B_ * Tl_ * m * HS;
  const float* src = sharded.f32();
  float* s = send_.f32();
  for (int d = 0; d < P_; d++)  // to rank d: its tokens, my heads
    for (int64_t b = 0; b < B_; b++)
      std::memcpy(s + d * blk + b * Tl_ * m * HS, src + (b * T_ + d * Tl_) * m * HS, size_t(Tl_ * m * HS) * 4);
  comm_.all_to_all(s, recv_.f32(), blk);
  bytes_sent_ += (P_ - 1) * blk * 4;
  const float* r = recv_.f32();
  float* dst = local.f32();
  if (accumulate) std::memset(dst, 0, local.bytes());
  for (int sr = 0; sr < P_; sr++)
    for (int64_t b = 0; b < B_; b++)
      for (int64_t t = 0; t < Tl_; t++)
        for (int64_t j = 0; j < m; j++) {
          float* o = dst + ((b * Tl_ + t) * H + heads[size_t(sr)][size_t(j)]) * HS;
          const float* i = r + sr * blk + ((b * Tl_ + t) * m + j) * HS;
          if (accumulate)
            for (int64_t e = 0; e < HS; e++) o[e] += i[e];
          else
            std::memcpy(o, i, size_t(HS) * 4);
        }
}

void UlyssesAttention::lse_to_local(const Tensor& sharded, Tensor local) {
  const int64_t blk = B_ * NHr_ * Tl_, NH = c_.num_attention_heads;
  float* s = send_.f32();
  for (int d = 0; d < P_; d++)
    for (int64_t b = 0; b < B_; b++)
      for (int64_t h = 0; h < NHr_; h++)
        std::memcpy(s + d * blk + (b * NHr_ + h) * Tl_, sharded.f32() + (b * NHr_ + h) * T_ + d * Tl_, size_t(Tl_) * 4);
  comm_.all_to_all(s, recv_.f32(), blk);
  bytes_sent_ += (P_ - 1) * blk * 4;
  for (int sr = 0; sr < P_; sr++)
    for (int64_t b = 0; b < B_; b++)
      for (int64_t h = 0; h < NHr_; h++)
        std::memcpy(local.f32() + (b * NH + sr * NHr_ + h) * Tl_, recv_.f32() + sr * blk + (b * NHr_ + h) * Tl_,
                    size_t(Tl_) * 4);
}

void UlyssesAttention::lse_to_sharded(const Tensor& local, Tensor sharded) {
  const int64_t blk = B_ * NHr_ * Tl_, NH = c_.num_attention_heads;
  float* s = send_.f32();
  for (int d = 0; d < P_; d++)
    for (int64_t b = 0; b < B_; b++)
      for (int64_t h = 0; h < NHr_; h++)
        std::memcpy(s + d * blk + (b * NHr_ + h) * Tl_, local.f32() + (b * NH + d * NHr_ + h) * Tl_, size_t(Tl_) * 4);
  comm_.all_to_all(s, recv_.f32(), blk);
  bytes_sent_ += (P_ - 1) * blk * 4;
  for (int sr = 0; sr < P_; sr++)
    for (int64_t b = 0; b < B_; b++)
      for (int64_t h = 0; h < NHr_; h++)
        std::memcpy(sharded.f32() + (b * NHr_ + h) * T_ + sr * Tl_, recv_.f32() + sr * blk + (b * NHr_ + h) * Tl_,
                    size_t(Tl_) * 4);
}

void UlyssesAttention::forward(int64_t, const BlockActs& a, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  scatter_heads(a.q.view({B_, Tl_, NH, HS}), NH, qheads_, q_.t());
  scatter_heads(a.k.view({B_, Tl_, NKV, HS}), NKV, kvheads_, k_.t());
  scatter_heads(a.v.view({B_, Tl_, NKV, HS}), NKV, kvheads_, v_.t());
  AttentionParams p;
  p.q_doc = p.k_doc = docs_.t();
  attention_forward(o_.t(), lse_.t(), q_.t(), k_.t(), v_.t(), p, ctx);
  gather_heads(o_.t(), NH, qheads_, a.att.view({B_, Tl_, NH, HS}), false);
  lse_to_local(lse_.t(), a.lse);
}

void UlyssesAttention::backward(int64_t, const BlockActs& a, const BlockGrads& g, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  scatter_heads(a.q.view({B_, Tl_, NH, HS}), NH, qheads_, q_.t());
  scatter_heads(a.k.view({B_, Tl_, NKV, HS}), NKV, kvheads_, k_.t());
  scatter_heads(a.v.view({B_, Tl_, NKV, HS}), NKV, kvheads_, v_.t());
  scatter_heads(a.att.view({B_, Tl_, NH, HS}), NH, qheads_, o_.t());
  scatter_heads(g.datt.view({B_, Tl_, NH, HS}), NH, qheads_, dout_.t());
  lse_to_sharded(a.lse, lse_.t());
  AttentionParams p;
  p.q_doc = p.k_doc = docs_.t();
  attention_backward(dq_.t(), dk_.t(), dv_.t(), dout_.t(), q_.t(), k_.t(), v_.t(), o_.t(), lse_.t(), p, ctx);
  gather_heads(dq_.t(), NH, qheads_, g.dq.view({B_, Tl_, NH, HS}), false);
  const bool copies = NKV % P_ != 0;  // replicated KV heads: sum their gradients
  gather_heads(dk_.t(), NKV, kvheads_, g.dk.view({B_, Tl_, NKV, HS}), copies);
  gather_heads(dv_.t(), NKV, kvheads_, g.dv.view({B_, Tl_, NKV, HS}), copies);
}

}  // namespace longctx
