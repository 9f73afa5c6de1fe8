#include "train/kv_pages.h"

#include <algorithm>

#include "ops/attention.h"
#include "ops/elementwise.h"

namespace longctx {

namespace {
// host memory only (the copy thread's side of an off-device store)
void add_into_host(float* d, const float* s, int64_t n, float scale) {
  for (int64_t i = 0; i < n; i++) d[i] += scale * s[i];
}
}  // namespace

KvPages::KvPages(const LlamaConfig& c, const StepLayout& s, int64_t k, Memory& mem)
    : c_(c),
      mem_(mem),
      Tc_(s.Tc),
      k_(k),
      page_elems_(s.Tc * c.kv_dim()),
      tier_(s.plan.offload == Offload::none   ? Tier::device
            : s.plan.offload == Offload::host ? Tier::host
                                              : Tier::disk),
      gpu_(!mem.host_accessible(Tier::device)) {
  const int64_t Ckv = c.kv_dim(), Cq = c.q_dim(), NH = c.num_attention_heads, Tp = k * Tc_,
                L = c.num_hidden_layers;
  if (tier_ == Tier::disk) {
    kv_file_ = std::make_unique<DiskFile>(s.plan.offload_dir, 2 * L * Tp * Ckv * 4, mem, Tag::kv_cache);
    grad_file_ = std::make_unique<DiskFile>(s.plan.offload_dir, 2 * L * Tp * Ckv * 4, mem, Tag::kv_grad);
    io_copy_ = Buffer(mem, Tier::host, Tag::kv_grad, {Tc_, Ckv});  // the copy thread's read-add-write page
    if (gpu_) io_main_ = Buffer(mem, Tier::host, Tag::kv_cache, {Tc_, Ckv});
  } else {
    for (int64_t l = 0; l < L; l++) {
      kc_.emplace_back(mem, tier_, Tag::kv_cache, Shape{Tp, Ckv});
      vc_.emplace_back(mem, tier_, Tag::kv_cache, Shape{Tp, Ckv});
      kg_.emplace_back(mem, tier_, Tag::kv_grad, Shape{Tp, Ckv});
      vg_.emplace_back(mem, tier_, Tag::kv_grad, Shape{Tp, Ckv});
    }
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
    if (gpu_)
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

KvPages::~KvPages() { copier_.reset(); }  // drains the queue before the stores go

void KvPages::set_docs(std::vector<int32_t>& d, const std::vector<int32_t>& real, Context& ctx) {
  copy_tensor(docs_.t(), Tensor(d.data(), {int64_t(d.size())}, DType::I32, Tier::host), ctx);
  // one document (padding only after it): no mask is needed, since no real row sees the padding (causal)
  // and the padding has no labels; without one the GPU's fused attention can run
  masked_ = false;
  for (size_t t = 1; t < real.size() && !masked_; t++) masked_ = real[t] != real[0];
}

void KvPages::zero_grads() {
  if (grad_file_) return grad_file_->zero();
  for (auto& b : kg_) b.zero();
  for (auto& b : vg_) b.zero();
}

Tensor KvPages::page(Store s, int64_t l, int64_t p) const {
  const std::vector<Buffer>& b = s == kK ? kc_ : s == kV ? vc_ : s == kDK ? kg_ : vg_;
  return b[size_t(l)].t().slice0(p * Tc_, Tc_);
}

int64_t KvPages::disk_offset(Store s, int64_t l, int64_t p) const {
  const int64_t which = s == kK || s == kDK ? 0 : 1;
  return ((2 * l + which) * k_ + p) * page_elems_ * 4;
}

void KvPages::put(Store s, int64_t l, int64_t p, const Tensor& src, Context& ctx) {
  if (tier_ != Tier::disk) return copy_tensor(page(s, l, p), src, ctx);
  const void* from = src.ptr;
  if (gpu_) copy_tensor(io_main_.t(), src.view(io_main_.t().shape), ctx), from = io_main_.t().ptr;
  file(s).write(disk_offset(s, l, p), from, page_elems_ * 4);
}

void KvPages::get(Store s, int64_t l, int64_t p, const Tensor& dst, Context& ctx) {
  if (tier_ != Tier::disk) return copy_tensor(dst, page(s, l, p).view(dst.shape), ctx);
  if (!gpu_) return file(s).read(disk_offset(s, l, p), dst.ptr, page_elems_ * 4);
  file(s).read(disk_offset(s, l, p), io_main_.t().ptr, page_elems_ * 4);
  copy_tensor(dst, io_main_.t().view(dst.shape), ctx);
}

void KvPages::put_async(Store s, int64_t l, int64_t p, const Tensor& dst) {
  const size_t n = size_t(page_elems_) * 4;
  if (tier_ != Tier::disk) return mem_.copy(Tier::device, dst.ptr, tier_, page(s, l, p).ptr, n);
  if (!gpu_) return file(s).read(disk_offset(s, l, p), dst.ptr, int64_t(n));
  file(s).read(disk_offset(s, l, p), io_copy_.t().ptr, int64_t(n));
  mem_.copy(Tier::device, dst.ptr, Tier::host, io_copy_.t().ptr, n);
}

void KvPages::add_async(Store s, int64_t l, int64_t p, const Tensor& src, const Tensor& src_host, float sc) {
  const float* from = src.f32();
  if (gpu_) {  // the gradient page comes to the host first
    mem_.copy(Tier::host, src_host.ptr, Tier::device, src.ptr, size_t(page_elems_) * 4);
    from = src_host.f32();
  }
  if (tier_ != Tier::disk) return add_into_host(page(s, l, p).f32(), from, page_elems_, sc);
  float* buf = io_copy_.f32();
  file(s).read(disk_offset(s, l, p), buf, page_elems_ * 4);
  add_into_host(buf, from, page_elems_, sc);
  file(s).write(disk_offset(s, l, p), buf, page_elems_ * 4);
}

void KvPages::forward(int64_t l, const BlockActs& a, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  store_kv(l, a, ctx);  // this chunk's K/V, for the chunks after it
  const Tensor q = a.q.view({1, Tc_, NH, HS}), out = a.att.view({1, Tc_, NH, HS});
  attention_forward(out, a.lse, q, a.k.view({1, Tc_, NKV, HS}), a.v.view({1, Tc_, NKV, HS}), params(l, j_),
                    ctx);
  const int64_t lo = first_page(l);
  if (j_ - 1 >= lo) prefetch(l, j_ - 1);
  for (int64_t p = j_ - 1; p >= lo; p--) {
    Tensor K, V;
    fetch(l, p, lo, K, V);
    attention_forward(out_p_.t().view({1, Tc_, NH, HS}), lse_p_.t().view({1, NH, Tc_}), q, K, V, params(l, p),
                      ctx);
    attention_merge(out, a.lse, out_p_.t().view({1, Tc_, NH, HS}), lse_p_.t().view({1, NH, Tc_}), ctx);
  }
}

void KvPages::store_kv(int64_t l, const BlockActs& a, Context& ctx) {
  put(kK, l, j_, a.k, ctx);  // (the copy thread reads only earlier pages meanwhile)
  put(kV, l, j_, a.v, ctx);
}

void KvPages::backward(int64_t l, const BlockActs& a, const BlockGrads& g, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  const Tensor q = a.q.view({1, Tc_, NH, HS}), out = a.att.view({1, Tc_, NH, HS});
  const Tensor dout = g.datt.view({1, Tc_, NH, HS}), dq = g.dq.view({1, Tc_, NH, HS});
  attention_backward(dq, g.dk.view({1, Tc_, NKV, HS}), g.dv.view({1, Tc_, NKV, HS}), dout, q,
                     a.k.view({1, Tc_, NKV, HS}), a.v.view({1, Tc_, NKV, HS}), out, a.lse, params(l, j_),
                     ctx);
  // what the later chunks' queries sent back to this chunk's K and V
  add_grad_page(g.dk, kDK, l, j_, ctx);
  add_grad_page(g.dv, kDV, l, j_, ctx);
  const int64_t lo = first_page(l);
  if (j_ - 1 >= lo) prefetch(l, j_ - 1);
  for (int64_t p = j_ - 1; p >= lo; p--) {
    Tensor K, V;
    fetch(l, p, lo, K, V);
    const int s = int(p % 2);
    if (copier_) copier_->wait(sent_[s]);  // this slot's gradients from two pages ago have left
    const Tensor dk = dk_p_[s].t().view({1, Tc_, NKV, HS}), dv = dv_p_[s].t().view({1, Tc_, NKV, HS});
    attention_backward(dq_p_.t().view({1, Tc_, NH, HS}), dk, dv, dout, q, K, V, out, a.lse, params(l, p),
                       ctx);
    axpy_inplace(g.dq, 1.f, dq_p_.t().view(g.dq.shape), ctx);
    send_grad_page(l, p, s, ctx);
  }
  if (copier_) copier_->wait_all();  // the collected gradients are complete before the next chunk
}

AttentionParams KvPages::params(int64_t l, int64_t p) const {
  AttentionParams a;
  // an earlier page is wholly in the past of every query of chunk j_: no causal mask (the same result)
  a.causal = p == j_;
  a.q_offset = (j_ - p) * Tc_;  // chunk j_'s rows relative to page p's: what a sliding window measures
  a.window = c_.window(l);
  if (masked_) {
    a.q_doc = docs_.t().slice0(j_ * Tc_, Tc_).view({1, Tc_});
    a.k_doc = docs_.t().slice0(p * Tc_, Tc_).view({1, Tc_});
  }
  return a;
}

// Page p's keys sit (j_ - p) * Tc_ positions before chunk j_'s queries; its last key (Tc_ - 1) is visible to
// chunk j_'s first query iff Tc_ - 1 > (j_ - p) * Tc_ - window, i.e. (j_ - p) * Tc_ <= window + Tc_ - 2; the
// other queries see no more of it. Pages before that hold no key that any query of chunk j_ sees.
int64_t KvPages::first_page(int64_t l) const {
  const int64_t w = c_.window(l);
  if (w <= 0) return 0;
  return std::max<int64_t>(0, j_ - (w + Tc_ - 2) / Tc_);
}

// Starts bringing chunk p's K/V page of block l into staging slot p % 2 (its last reader, page p + 2, ran
// before: on the CPU compute is synchronous; on the GPU the copy is ordered after it on the same stream).
void KvPages::prefetch(int64_t l, int64_t p) {
  if (!copier_ || p < 0) return;
  const int s = int(p % 2);
  const Tensor kd = kpage_[s].t(), vd = vpage_[s].t();
  fetched_[s] = copier_->submit([=, this] {
    put_async(kK, l, p, kd);
    put_async(kV, l, p, vd);
  });
}

// K/V of chunk p for block l on the device (waits for its prefetch and starts the next one).
void KvPages::fetch(int64_t l, int64_t p, int64_t lo, Tensor& K, Tensor& V) {
  const Shape s{1, Tc_, c_.num_key_value_heads, c_.head_dim};
  pages_read_++;
  if (tier_ == Tier::device) {
    K = page(kK, l, p).view(s), V = page(kV, l, p).view(s);
    return;
  }
  const int slot = int(p % 2);
  copier_->wait(fetched_[slot]);
  if (p - 1 >= lo) prefetch(l, p - 1);
  K = kpage_[slot].t().view(s), V = vpage_[slot].t().view(s);
}

// g (Tc, Ckv) += the collected gradient of chunk p's page
void KvPages::add_grad_page(Tensor g, Store s, int64_t l, int64_t p, Context& ctx) {
  if (tier_ == Tier::device) return axpy_inplace(g, 1.f, page(s, l, p).view(g.shape), ctx);
  copier_->wait_all();  // the store's page is complete (and the disk's I/O page free)
  get(s, l, p, dkpage_.t(), ctx);
  axpy_inplace(g, 1.f, dkpage_.t().view(g.shape), ctx);
}

// chunk p's pages of block l's K/V gradient stores += kv_scale * slot s's dk, dv: on the copy thread when
// the stores are off the device
void KvPages::send_grad_page(int64_t l, int64_t p, int s, Context& ctx) {
  const Tensor dk = dk_p_[s].t(), dv = dv_p_[s].t();
  const float sc = kv_scale_;
  if (!copier_) {  // the stores are on the device
    axpy_inplace(page(kDK, l, p), sc, dk, ctx);
    return axpy_inplace(page(kDV, l, p), sc, dv, ctx);
  }
  const Tensor dkh = dk_h_[s].t(), dvh = dv_h_[s].t();  // defined when the device is GPU memory
  sent_[s] = copier_->submit([=, this] {
    add_async(kDK, l, p, dk, dkh, sc);
    add_async(kDV, l, p, dv, dvh, sc);
  });
}

}  // namespace longctx
