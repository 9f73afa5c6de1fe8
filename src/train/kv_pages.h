// KvPages: the K/V cache of chunk-wise training (SeCO/SpaCO) as an
// AttentionRunner. Every block's K and V for the whole (padded) sequence, and
// their gradients, live on the plan's offload tier (device, host or disk);
// pages of one chunk are brought to device staging slots as attention needs
// them, and the gradients that later chunks' queries send to earlier pages
// are added back into the stores, on a copy thread when off the device.
#pragma once
#include <memory>
#include <vector>

#include "core/copy_thread.h"
#include "model/block.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "strategy/memory_model.h"

namespace longctx {

namespace kv_detail {
// host memory only (the copy thread's side of an off-device store)
inline void add_into_host(Tensor dst, Tensor src, float scale) {
  float* d = dst.f32();
  const float* s = src.f32();
  for (int64_t i = 0; i < dst.numel(); i++) d[i] += scale * s[i];
}

}  // namespace kv_detail

// Every block's K and V for the whole (padded) sequence, and their gradients,
// on the plan's offload tier; pages of one chunk each are brought to device
// staging buffers as attention needs them.
class KvPages : public AttentionRunner {
 public:
  KvPages(const LlamaConfig& c, const StepLayout& s, int64_t k, Memory& mem)
      : c_(c),
        mem_(mem),
        Tc_(s.Tc),
        k_(k),
        tier_(s.plan.offload == Offload::none   ? Tier::device
              : s.plan.offload == Offload::host ? Tier::host
                                                : Tier::disk) {
    const int64_t Ckv = c.kv_dim(), Cq = c.q_dim(), NH = c.num_attention_heads, Tp = k * Tc_;
    if (tier_ == Tier::disk) mem.set_disk_dir(s.plan.offload_dir.empty() ? "/tmp" : s.plan.offload_dir);
    for (int64_t l = 0; l < c.num_hidden_layers; l++) {
      kc_.emplace_back(mem, tier_, Tag::kv_cache, Shape{Tp, Ckv});
      vc_.emplace_back(mem, tier_, Tag::kv_cache, Shape{Tp, Ckv});
      kg_.emplace_back(mem, tier_, Tag::kv_grad, Shape{Tp, Ckv});
      vg_.emplace_back(mem, tier_, Tag::kv_grad, Shape{Tp, Ckv});
    }
    const Tier dev = Tier::device;
    if (tier_ != dev) {  // two slots each: one computes while the copy thread fills the other
      for (int i = 0; i < 2; i++) {
        kpage_[i] = Buffer(mem, dev, Tag::kv_cache, {Tc_, Ckv});
        vpage_[i] = Buffer(mem, dev, Tag::kv_cache, {Tc_, Ckv});
      }
      dkpage_ = Buffer(mem, dev, Tag::kv_grad, {Tc_, Ckv});
      copier_ = std::make_unique<CopyThread>();
      // GPU memory: the copy thread adds a page's gradients into the store on the host, from pinned copies
      if (!mem.host_accessible(dev))
        for (int i = 0; i < 2; i++) {
          dk_h_[i] = Buffer(mem, Tier::host, Tag::kv_grad, {Tc_, Ckv});
          dv_h_[i] = Buffer(mem, Tier::host, Tag::kv_grad, {Tc_, Ckv});
        }
    }
    out_p_ = Buffer(mem, dev, Tag::workspace, {Tc_, Cq});  // (Tc, NH, HS)
    lse_p_ = Buffer(mem, dev, Tag::workspace, {NH, Tc_});
    dq_p_ = Buffer(mem, dev, Tag::workspace, {Tc_, Cq});
    for (int i = 0; i < 2; i++) {
      dk_p_[i] = Buffer(mem, dev, Tag::workspace, {Tc_, Ckv});
      dv_p_[i] = Buffer(mem, dev, Tag::workspace, {Tc_, Ckv});
    }
    docs_ = Buffer(mem, dev, Tag::workspace, {Tp}, DType::I32);
  }
  ~KvPages() override { copier_.reset(); }

  // Per-step state: the whole sequence's document ids (padding its own).
  void set_docs(std::vector<int32_t>& d, Context& ctx) {
    copy_tensor(docs_.t(), Tensor(d.data(), {int64_t(d.size())}, DType::I32, Tier::host), ctx);
  }
  void zero_grads() {
    for (auto& b : kg_) b.zero();
    for (auto& b : vg_) b.zero();
  }
  void set_chunk(int64_t j, float kv_scale) { j_ = j, kv_scale_ = kv_scale; }

  void forward(int64_t l, const BlockActs& a, Context& ctx) override {
    const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
    copy_tensor(page(kc_[size_t(l)], j_), a.k, ctx);  // this chunk's K/V, for the chunks after it
    copy_tensor(page(vc_[size_t(l)], j_), a.v, ctx);
    const Tensor q = a.q.view({1, Tc_, NH, HS}), out = a.att.view({1, Tc_, NH, HS});
    attention_forward(out, a.lse, q, a.k.view({1, Tc_, NKV, HS}), a.v.view({1, Tc_, NKV, HS}), params(j_),
                      ctx);
    prefetch(l, j_ - 1);
    for (int64_t p = j_ - 1; p >= 0; p--) {
      Tensor K, V;
      fetch(l, p, K, V);
      attention_forward(out_p_.t().view({1, Tc_, NH, HS}), lse_p_.t().view({1, NH, Tc_}), q, K, V, params(p),
                        ctx);
      attention_merge(out, a.lse, out_p_.t().view({1, Tc_, NH, HS}), lse_p_.t().view({1, NH, Tc_}), ctx);
    }
  }

  void store_kv(int64_t l, const BlockActs& a, Context& ctx) override {
    copy_tensor(page(kc_[size_t(l)], j_), a.k, ctx);
    copy_tensor(page(vc_[size_t(l)], j_), a.v, ctx);
  }

  void backward(int64_t l, const BlockActs& a, const BlockGrads& g, Context& ctx) override {
    const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
    const Tensor q = a.q.view({1, Tc_, NH, HS}), out = a.att.view({1, Tc_, NH, HS});
    const Tensor dout = g.datt.view({1, Tc_, NH, HS}), dq = g.dq.view({1, Tc_, NH, HS});
    attention_backward(dq, g.dk.view({1, Tc_, NKV, HS}), g.dv.view({1, Tc_, NKV, HS}), dout, q,
                       a.k.view({1, Tc_, NKV, HS}), a.v.view({1, Tc_, NKV, HS}), out, a.lse, params(j_), ctx);
    // what the later chunks' queries sent back to this chunk's K and V
    add_grad_page(g.dk, kg_[size_t(l)], j_, ctx);
    add_grad_page(g.dv, vg_[size_t(l)], j_, ctx);
    prefetch(l, j_ - 1);
    for (int64_t p = j_ - 1; p >= 0; p--) {
      Tensor K, V;
      fetch(l, p, K, V);
      const int s = int(p % 2);
      if (copier_) copier_->wait(sent_[s]);  // this slot's gradients from two pages ago have left
      const Tensor dk = dk_p_[s].t().view({1, Tc_, NKV, HS}), dv = dv_p_[s].t().view({1, Tc_, NKV, HS});
      attention_backward(dq_p_.t().view({1, Tc_, NH, HS}), dk, dv, dout, q, K, V, out, a.lse, params(p), ctx);
      axpy_inplace(g.dq, 1.f, dq_p_.t().view(g.dq.shape), ctx);
      send_grad_page(l, p, s, ctx);
    }
    if (copier_) copier_->wait_all();  // the collected gradients are complete before the next chunk
  }

 private:
  Tensor page(const Buffer& b, int64_t p) const { return b.t().slice0(p * Tc_, Tc_); }

  // Chunk j_'s queries against chunk p's keys (p <= j_).
  AttentionParams params(int64_t p) const {
    AttentionParams a;
    a.q_offset = (j_ - p) * Tc_;
    a.q_doc = docs_.t().slice0(j_ * Tc_, Tc_).view({1, Tc_});
    a.k_doc = docs_.t().slice0(p * Tc_, Tc_).view({1, Tc_});
    return a;
  }

  // Starts bringing chunk p's K/V page of block l into staging slot p % 2.
  void prefetch(int64_t l, int64_t p) {
    if (!copier_ || p < 0) return;
    const int s = int(p % 2);  // its last reader, page p + 2, has run: compute is synchronous
    const Tensor ks = page(kc_[size_t(l)], p), vs = page(vc_[size_t(l)], p);
    const Tensor kd = kpage_[s].t(), vd = vpage_[s].t();
    Memory* m = &mem_;
    const Tier from = tier_;
    fetched_[s] = copier_->submit([=] {
      m->copy(Tier::device, kd.ptr, from, ks.ptr, kd.bytes());
      m->copy(Tier::device, vd.ptr, from, vs.ptr, vd.bytes());
    });
  }

  // K/V of chunk p for block l on the device (waits for its prefetch and
  // starts the next one).
  void fetch(int64_t l, int64_t p, Tensor& K, Tensor& V) {
    const Shape s{1, Tc_, c_.num_key_value_heads, c_.head_dim};
    if (tier_ == Tier::device) {
      K = page(kc_[size_t(l)], p).view(s), V = page(vc_[size_t(l)], p).view(s);
      return;
    }
    const int slot = int(p % 2);
    copier_->wait(fetched_[slot]);
    prefetch(l, p - 1);
    K = kpage_[slot].t().view(s), V = vpage_[slot].t().view(s);
  }

  // g (Tc, Ckv) += the collected gradient of chunk p's page
  void add_grad_page(Tensor g, const Buffer& store, int64_t p, Context& ctx) {
    if (tier_ == Tier::device) return axpy_inplace(g, 1.f, page(store, p).view(g.shape), ctx);
    copy_tensor(dkpage_.t(), page(store, p), ctx);
    axpy_inplace(g, 1.f, dkpage_.t().view(g.shape), ctx);
  }
  // chunk p's pages of block l's K/V gradient stores += kv_scale * slot s's
  // dk, dv: on the copy thread when the stores are off the device
  void send_grad_page(int64_t l, int64_t p, int s, Context& ctx) {
    const Tensor kd = page(kg_[size_t(l)], p), vd = page(vg_[size_t(l)], p);
    const Tensor dk = dk_p_[s].t(), dv = dv_p_[s].t();
    const float sc = kv_scale_;
    if (!copier_) {  // the stores are on the device
      axpy_inplace(kd, sc, dk, ctx);
      return axpy_inplace(vd, sc, dv, ctx);
    }
    Memory* m = &mem_;
    const Tensor dkh = dk_h_[s].t(), dvh = dv_h_[s].t();  // defined when the device is GPU memory
    sent_[s] = copier_->submit([=] {
      if (!dkh.defined()) {
        kv_detail::add_into_host(kd, dk, sc);
        return kv_detail::add_into_host(vd, dv, sc);
      }
      m->copy(Tier::host, dkh.ptr, Tier::device, dk.ptr, dk.bytes());
      m->copy(Tier::host, dvh.ptr, Tier::device, dv.ptr, dv.bytes());
      kv_detail::add_into_host(kd, dkh, sc);
      kv_detail::add_into_host(vd, dvh, sc);
    });
  }

  LlamaConfig c_;
  Memory& mem_;
  int64_t Tc_, k_;
  Tier tier_;
  std::vector<Buffer> kc_, vc_, kg_, vg_;  // L x (k*Tc, Ckv) on the tier
  Buffer kpage_[2], vpage_[2], dkpage_;    // (Tc, Ckv) device staging
  Buffer out_p_, lse_p_, dq_p_, docs_;     // device scratch
  Buffer dk_p_[2], dv_p_[2];               // (Tc, Ckv) gradients of one earlier page, two slots
  Buffer dk_h_[2], dv_h_[2];               // (Tc, Ckv) their host copies (GPU memory, off-device stores)
  std::unique_ptr<CopyThread> copier_;     // off-device tiers: page traffic overlaps with compute
  uint64_t fetched_[2] = {0, 0}, sent_[2] = {0, 0};
  int64_t j_ = 0;
  float kv_scale_ = 1.f;
};

}  // namespace longctx
