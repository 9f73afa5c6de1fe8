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
// the same into bf16: the sum in fp32, rounded
void add_into_host_bf16(uint16_t* d, const float* s, int64_t n, float scale) {
  for (int64_t i = 0; i < n; i++) d[i] = f32_to_bf16(bf16_to_f32(d[i]) + scale * s[i]);
}
}  // namespace

KvPages::KvPages(const LlamaConfig& c, const StepLayout& s, int64_t k, Memory& mem, Comm* share,
                 bool token_slices)
    : c_(c),
      mem_(mem),
      Tc_(s.Tc),
      k_(k),
      page_elems_(s.Tc * c.kv_dim()),
      share_(share && share->size() > 1 ? share : nullptr),
      bf16_(s.plan.kv_bf16()),
      gbf16_(s.plan.kv_grad_bf16()),
      tier_(s.plan.offload == Offload::none   ? Tier::device
            : s.plan.offload == Offload::host ? Tier::host
                                              : Tier::disk),
      gpu_(!mem.host_accessible(Tier::device)) {
  const int64_t Ckv = c.kv_dim(), Cq = c.q_dim(), NH = c.num_attention_heads, Tp = k * Tc_,
                L = c.num_hidden_layers;
  CHECK(!token_slices || (share_ && Tc_ % share_->size() == 0), "[kv_pages] token slices need ranks that ",
        "divide the chunk of ", Tc_);
  // token slices: this rank's queries are its slice of each chunk, and its part of a page is that slice's K/V
  Tq_ = token_slices ? Tc_ / share_->size() : Tc_;
  q_off_ = token_slices ? Tq_ * share_->rank() : 0;
  part_ = share_ ? part_elems(page_elems_, share_->size()) : page_elems_;
  part_off_ = share_ ? std::min(page_elems_, part_ * share_->rank()) : 0;
  part_len_ = std::min(part_, page_elems_ - part_off_);
  const DType kvt = bf16_ ? DType::BF16 : DType::F32;
  if (tier_ == Tier::disk) {
    kv_file_ = std::make_unique<DiskFile>(s.plan.offload_dir, 2 * L * k * part_ * elem_bytes(kK), mem,
                                          Tag::kv_cache);
    grad_file_ = std::make_unique<DiskFile>(s.plan.offload_dir, 2 * L * k * part_ * elem_bytes(kDK), mem,
                                            Tag::kv_grad);
    io_copy_ = Buffer(mem, Tier::host, Tag::kv_grad, {Tc_, Ckv});  // the copy thread's read-add-write page
    if (gpu_) io_main_ = Buffer(mem, Tier::host, Tag::kv_cache, {Tc_, Ckv});
  } else {
    for (int64_t l = 0; l < L; l++) {
      kc_.emplace_back(mem, tier_, Tag::kv_cache, Shape{k, part_}, kvt);
      vc_.emplace_back(mem, tier_, Tag::kv_cache, Shape{k, part_}, kvt);
      kg_.emplace_back(mem, tier_, Tag::kv_grad, Shape{k, part_}, gbf16_ ? DType::BF16 : DType::F32);
      vg_.emplace_back(mem, tier_, Tag::kv_grad, Shape{k, part_}, gbf16_ ? DType::BF16 : DType::F32);
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
    if (bf16_)  // what the copy thread brings: bf16, widened on the device
      for (int i = 0; i < 2; i++) {
        kraw_[i] = Buffer(mem, dev, Tag::kv_cache, {Tc_ * Ckv}, DType::BF16);
        vraw_[i] = Buffer(mem, dev, Tag::kv_cache, {Tc_ * Ckv}, DType::BF16);
      }
  } else if (share_ || bf16_) {  // one slot where a page is gathered from its parts, or widened
    kpage_[0] = Buffer(mem, dev, Tag::kv_cache, {Tc_, Ckv});
    vpage_[0] = Buffer(mem, dev, Tag::kv_cache, {Tc_, Ckv});
  }
  if (bf16_) praw_ = Buffer(mem, dev, Tag::kv_cache, {part_}, DType::BF16);  // a page rounded to be stored
  if (gbf16_) {  // a gradient page as stored, and widened
    graw_ = Buffer(mem, dev, Tag::kv_grad, {part_}, DType::BF16);
    gwide_ = Buffer(mem, dev, Tag::kv_grad, {part_});
  }
  out_p_ = Buffer(mem, dev, Tag::workspace, {Tq_, Cq});  // (Tq, NH, HS)
  lse_p_ = Buffer(mem, dev, Tag::workspace, {NH, Tq_});
  dq_p_ = Buffer(mem, dev, Tag::workspace, {Tq_, Cq});
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
  return b[size_t(l)].t().slice0(p, 1).view({part_}).slice0(0, part_len_);
}

int64_t KvPages::disk_offset(Store s, int64_t l, int64_t p) const {
  const int64_t which = s == kK || s == kDK ? 0 : 1;
  return ((2 * l + which) * k_ + p) * part_ * elem_bytes(s);
}

// src, dst: this rank's part of a page (part_len_ elements, fp32)
void KvPages::put(Store s, int64_t l, int64_t p, const Tensor& src, Context& ctx) {
  Tensor v = src;
  if (elem_bytes(s) == 2) {  // rounded to bf16 first
    v = praw_.t().slice0(0, part_len_);
    convert_dtype(v, src, ctx);
  }
  if (tier_ != Tier::disk) return copy_tensor(page(s, l, p), v, ctx);
  const void* from = v.ptr;
  if (gpu_) {
    const Tensor io = Tensor(io_main_.t().ptr, {part_len_}, v.dtype, Tier::host);
    copy_tensor(io, v, ctx), from = io.ptr;
  }
  file(s).write(disk_offset(s, l, p), from, part_len_ * elem_bytes(s));
}

void KvPages::get(Store s, int64_t l, int64_t p, const Tensor& dst, Context& ctx) {
  if (tier_ != Tier::disk) return copy_tensor(dst, page(s, l, p), ctx);
  if (!gpu_) return file(s).read(disk_offset(s, l, p), dst.ptr, part_len_ * elem_bytes(s));
  const Tensor io = Tensor(io_main_.t().ptr, {part_len_}, dst.dtype, Tier::host);
  file(s).read(disk_offset(s, l, p), io.ptr, part_len_ * elem_bytes(s));
  copy_tensor(dst, io, ctx);
}

void KvPages::put_async(Store s, int64_t l, int64_t p, const Tensor& dst, const std::shared_ptr<void>& f) {
  const size_t n = size_t(part_len_ * elem_bytes(s));
  if (tier_ != Tier::disk) return mem_.copy_after(Tier::device, dst.ptr, tier_, page(s, l, p).ptr, n, f);
  if (!gpu_) return file(s).read(disk_offset(s, l, p), dst.ptr, int64_t(n));
  file(s).read(disk_offset(s, l, p), io_copy_.t().ptr, int64_t(n));
  mem_.copy_after(Tier::device, dst.ptr, Tier::host, io_copy_.t().ptr, n, f);
}

void KvPages::add_async(Store s, int64_t l, int64_t p, const Tensor& src, const Tensor& src_host, float sc,
                        const std::shared_ptr<void>& f) {
  const float* from = src.f32();
  if (gpu_) {  // the gradient page comes to the host first
    mem_.copy_after(Tier::host, src_host.ptr, Tier::device, src.ptr, size_t(part_len_) * 4, f);
    from = src_host.f32();
  }
  const int64_t eb = elem_bytes(s);
  void* to = tier_ != Tier::disk ? page(s, l, p).ptr : io_copy_.t().ptr;
  if (tier_ == Tier::disk) file(s).read(disk_offset(s, l, p), to, part_len_ * eb);
  if (eb == 2)
    add_into_host_bf16(static_cast<uint16_t*>(to), from, part_len_, sc);
  else
    add_into_host(static_cast<float*>(to), from, part_len_, sc);
  if (tier_ == Tier::disk) file(s).write(disk_offset(s, l, p), to, part_len_ * eb);
}

void KvPages::forward(int64_t l, const BlockActs& a, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  store_kv(l, a, ctx);  // this chunk's K/V, for the chunks after it
  const Tensor q = a.q.view({1, Tq_, NH, HS}), out = a.att.view({1, Tq_, NH, HS});
  attention_forward(out, a.lse, q, a.k.view({1, Tc_, NKV, HS}), a.v.view({1, Tc_, NKV, HS}), params(l, j_),
                    ctx);
  const int64_t lo = first_page(l);
  if (j_ - 1 >= lo) prefetch(l, j_ - 1);
  for (int64_t p = j_ - 1; p >= lo; p--) {
    Tensor K, V;
    fetch(l, p, lo, K, V, ctx);
    attention_forward(out_p_.t().view({1, Tq_, NH, HS}), lse_p_.t().view({1, NH, Tq_}), q, K, V, params(l, p),
                      ctx);
    attention_merge(out, a.lse, out_p_.t().view({1, Tq_, NH, HS}), lse_p_.t().view({1, NH, Tq_}), ctx);
  }
}

void KvPages::store_kv(int64_t l, const BlockActs& a, Context& ctx) {
  put(kK, l, j_, own(a.k), ctx);  // (the copy thread reads only earlier pages meanwhile)
  put(kV, l, j_, own(a.v), ctx);
}

void KvPages::backward(int64_t l, const BlockActs& a, const BlockGrads& g, Context& ctx) {
  const int64_t NH = c_.num_attention_heads, NKV = c_.num_key_value_heads, HS = c_.head_dim;
  const Tensor q = a.q.view({1, Tq_, NH, HS}), out = a.att.view({1, Tq_, NH, HS});
  const Tensor dout = g.datt.view({1, Tq_, NH, HS}), dq = g.dq.view({1, Tq_, NH, HS});
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
    fetch(l, p, lo, K, V, ctx);
    const int s = int(p % 2);
    if (copier_) copier_->wait(sent_[s]);  // this slot's gradients from two pages ago have left
    const Tensor dk = dk_p_[s].t().view({1, Tc_, NKV, HS}), dv = dv_p_[s].t().view({1, Tc_, NKV, HS});
    attention_backward(dq_p_.t().view({1, Tq_, NH, HS}), dk, dv, dout, q, K, V, out, a.lse, params(l, p),
                       ctx);
    axpy_inplace(g.dq, 1.f, dq_p_.t().view(g.dq.shape), ctx);
    if (share_) {  // every rank's query heads sent gradients to the page: each keeps its part's sum
      for (const Tensor& t : {dk, dv}) share_->reduce_scatter_sum(t.f32(), page_elems_);
      bytes_sent_ += 2 * (share_->size() - 1) * part_ * 4;
    }
    send_grad_page(l, p, s, ctx);
  }
  if (copier_) copier_->wait_all();  // the collected gradients are complete before the next chunk
}

AttentionParams KvPages::params(int64_t l, int64_t p) const {
  AttentionParams a;
  // an earlier page is wholly in the past of every query of chunk j_: no causal mask (the same result)
  a.causal = p == j_;
  // chunk j_'s rows (this rank's slice of them) relative to page p's: what a sliding window measures
  a.q_offset = (j_ - p) * Tc_ + q_off_;
  a.window = c_.window(l);
  if (masked_) {
    a.q_doc = docs_.t().slice0(j_ * Tc_ + q_off_, Tq_).view({1, Tq_});
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
// before: on the CPU compute is synchronous; on the GPU the copy waits for the fence taken here).
void KvPages::prefetch(int64_t l, int64_t p) {
  if (!copier_ || p < 0) return;
  const int s = int(p % 2);
  const Tensor kd = bf16_ ? own(kraw_[s].t()) : own(kpage_[s].t()),
               vd = bf16_ ? own(vraw_[s].t()) : own(vpage_[s].t());
  const std::shared_ptr<void> f = mem_.fence();  // (GPU) the slot's last reader is done
  fetched_[s] = copier_->submit([=, this] {
    put_async(kK, l, p, kd, f);
    put_async(kV, l, p, vd, f);
  });
}

// K/V of chunk p for block l on the device (waits for its prefetch and starts the next one).
void KvPages::fetch(int64_t l, int64_t p, int64_t lo, Tensor& K, Tensor& V, Context& ctx) {
  const Shape s{1, Tc_, c_.num_key_value_heads, c_.head_dim};
  pages_read_++;
  int slot = 0;
  if (tier_ == Tier::device && !share_ && !bf16_) {
    K = page(kK, l, p).view(s), V = page(kV, l, p).view(s);
    return;
  }
  if (tier_ == Tier::device) {  // this rank's part into the slot, widened from bf16
    for (Store st : {kK, kV}) {
      const Tensor to = own((st == kK ? kpage_ : vpage_)[0].t());
      bf16_ ? convert_dtype(to, page(st, l, p), ctx) : copy_tensor(to, page(st, l, p), ctx);
    }
  } else {
    slot = int(p % 2);
    copier_->wait(fetched_[slot]);
    if (p - 1 >= lo) prefetch(l, p - 1);
    if (bf16_) {  // (the prefetch above fills the other slot)
      convert_dtype(own(kpage_[slot].t()), own(kraw_[slot].t()), ctx);
      convert_dtype(own(vpage_[slot].t()), own(vraw_[slot].t()), ctx);
    }
  }
  if (share_) {  // the other ranks' parts
    for (const Buffer* b : {&kpage_[slot], &vpage_[slot]})
      share_->all_gather_parts(b->t().f32(), page_elems_);
    bytes_sent_ += 2 * (share_->size() - 1) * part_ * 4;
  }
  K = kpage_[slot].t().view(s), V = vpage_[slot].t().view(s);
}

// g (Tc, Ckv) += the collected gradient of chunk p's page
// (shared heads: this rank's part of the group's sum; the Ulysses exchange back adds the ranks' copies)
void KvPages::add_grad_page(Tensor g, Store s, int64_t l, int64_t p, Context& ctx) {
  if (tier_ != Tier::device)
    copier_->wait_all();  // the store's page is complete (and the disk's I/O page free)
  add_from_store(own(g), s, l, p, ctx);
}

void KvPages::add_from_store(const Tensor& t, Store s, int64_t l, int64_t p, Context& ctx) {
  if (gbf16_) {  // the bf16 page, widened
    const Tensor raw = graw_.t().slice0(0, part_len_), wide = gwide_.t().slice0(0, part_len_);
    if (tier_ == Tier::device) {
      convert_dtype(wide, page(s, l, p), ctx);
    } else {
      get(s, l, p, raw, ctx);
      convert_dtype(wide, raw, ctx);
    }
    return axpy_inplace(t, 1.f, wide, ctx);
  }
  if (tier_ == Tier::device) return axpy_inplace(t, 1.f, page(s, l, p), ctx);
  get(s, l, p, own(dkpage_.t()), ctx);
  axpy_inplace(t, 1.f, own(dkpage_.t()), ctx);
}

// chunk p's pages of block l's K/V gradient stores += kv_scale * slot s's dk, dv: on the copy thread when
// the stores are off the device
void KvPages::send_grad_page(int64_t l, int64_t p, int s, Context& ctx) {
  const Tensor dk = own(dk_p_[s].t()), dv = own(dv_p_[s].t());
  const float sc = kv_scale_;
  if (!copier_) {  // the stores are on the device
    for (Store st : {kDK, kDV}) {
      const Tensor from = st == kDK ? dk : dv;
      if (!gbf16_) {
        axpy_inplace(page(st, l, p), sc, from, ctx);
        continue;
      }
      const Tensor wide = gwide_.t().slice0(0, part_len_);  // widen, add, round
      convert_dtype(wide, page(st, l, p), ctx);
      axpy_inplace(wide, sc, from, ctx);
      convert_dtype(page(st, l, p), wide, ctx);
    }
    return;
  }
  // defined when the device is GPU memory
  const Tensor dkh = dk_h_[s].t().defined() ? own(dk_h_[s].t()) : Tensor(),
               dvh = dv_h_[s].t().defined() ? own(dv_h_[s].t()) : Tensor();
  const std::shared_ptr<void> f = mem_.fence();  // (GPU) the page's gradients are computed
  sent_[s] = copier_->submit([=, this] {
    add_async(kDK, l, p, dk, dkh, sc, f);
    add_async(kDV, l, p, dv, dvh, sc, f);
  });
}

}  // namespace longctx
