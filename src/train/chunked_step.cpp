#include "train/chunked_step.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/copy_thread.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/lm_head_loss.h"
#include "parallel/ulysses.h"

namespace longctx {

namespace {

constexpr int32_t kPadDoc = std::numeric_limits<int32_t>::min();  // padding rows: a document of their own

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// host memory only (the copy thread's side of an off-device store)
void add_into_host(Tensor dst, Tensor src, float scale) {
  float* d = dst.f32();
  const float* s = src.f32();
  for (int64_t i = 0; i < dst.numel(); i++) d[i] += scale * s[i];
}

}  // namespace

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
        add_into_host(kd, dk, sc);
        return add_into_host(vd, dv, sc);
      }
      m->copy(Tier::host, dkh.ptr, Tier::device, dk.ptr, dk.bytes());
      m->copy(Tier::host, dvh.ptr, Tier::device, dv.ptr, dv.bytes());
      add_into_host(kd, dkh, sc);
      add_into_host(vd, dvh, sc);
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

ChunkedStep::ChunkedStep(const LlamaConfig& c, Memory& mem, int64_t T, const Plan& plan, Comm* cp)
    : c_(c), lay_(step_layout(c, plan, 1, T)) {
  CHECK(lay_.plan.chunked(), "[chunked_step] needs chunk-mode seco or spaco");
  k_ = (T + lay_.Tc - 1) / lay_.Tc;
  Tl_ = lay_.Tc;
  if (!cp || cp->size() == 1) {
    kv_ = std::make_unique<KvPages>(c, lay_, k_, mem);
    step_ = std::make_unique<GradStep>(c, mem, lay_, kv_.get());
    return;
  }
  cp_ = cp, P_ = cp->size(), r_ = cp->rank();
  CHECK(lay_.Tc % P_ == 0, "plan: chunk size ", lay_.Tc, " does not divide over ", P_,
        " ranks of context parallelism (each runs an equal slice of every chunk); use a multiple of ", P_);
  Tl_ = lay_.Tc / P_;
  ulysses_ = std::make_unique<UlyssesAttention>(c, *cp, mem, 1, Tl_);
  LlamaConfig hc = c;  // the cache holds this rank's heads of whole chunks
  hc.num_attention_heads = ulysses_->group_heads(), hc.num_key_value_heads = ulysses_->group_kv_heads();
  kv_ = std::make_unique<KvPages>(hc, lay_, k_, mem);
  ulysses_->set_inner(kv_.get());
  Plan local = lay_.plan;  // the block rows of this rank's slice
  local.chunk_size = Tl_;
  step_ = std::make_unique<GradStep>(c, mem, step_layout(c, local, 1, T), ulysses_.get());
}

int64_t ChunkedStep::cp_bytes_sent() const { return ulysses_ ? ulysses_->bytes_sent() : 0; }

ChunkedStep::~ChunkedStep() = default;

std::vector<int64_t> ChunkedStep::chosen_chunks(uint64_t draw) const {
  std::vector<int64_t> out;
  const double pi =
      lay_.plan.chunk_mode == ChunkMode::spaco ? double(lay_.plan.chunk_budget) / double(k_) : 1;
  for (int64_t j = 0; j < k_; j++)
    if (pi >= 1 || double(mix64(draw * 0x100000001b3ull + uint64_t(j)) >> 11) * 0x1.0p-53 < pi)
      out.push_back(j);
  return out;
}

// Chunk j of the padded sequence (across ranks: this rank's slice of it), as
// a (1, Tl) batch in host memory (Tl = Tc / P).
StepInput ChunkedStep::chunk_input(int64_t j, const StepInput& in) {
  const int64_t T = lay_.T, Tl = Tl_, start = j * lay_.Tc + r_ * Tl;
  const int64_t n = std::max<int64_t>(0, std::min(Tl, T - start));
  std::vector<int32_t>&tok = chunk_tok_, &lab = chunk_lab_, &pos = chunk_pos_, &doc = chunk_doc_;
  tok.assign(size_t(Tl), 0), lab.assign(size_t(Tl), kIgnoreIndex);
  pos.assign(size_t(Tl), 0), doc.assign(size_t(Tl), kPadDoc);
  for (int64_t t = 0; t < n; t++) {
    tok[size_t(t)] = in.inputs.i32()[start + t];
    lab[size_t(t)] = in.labels.i32()[start + t];
    pos[size_t(t)] = pos_[size_t(start + t)];
    doc[size_t(t)] = doc_[size_t(start + t)];
  }
  return {Tensor(tok.data(), {1, Tl}, DType::I32), Tensor(lab.data(), {1, Tl}, DType::I32),
          Tensor(pos.data(), {1, Tl}, DType::I32), Tensor(doc.data(), {1, Tl}, DType::I32)};
}

double ChunkedStep::run(const ParamSet& w, const Grads& grads, const StepInput& in, Context& ctx,
                        double label_norm, uint64_t draw) {
  const int64_t T = lay_.T, Tc = lay_.Tc;
  CHECK(in.inputs.numel() == T && in.labels.numel() == T, "[chunked_step] expected one sequence of ", T,
        " inputs and labels, got ", in.inputs.numel(), " and ", in.labels.numel());
  pos_.assign(size_t(T), 0), doc_.assign(size_t(k_ * Tc), kPadDoc);
  for (int64_t t = 0; t < T; t++) {
    pos_[size_t(t)] = in.positions.defined() ? in.positions.i32()[t] : int32_t(t);
    doc_[size_t(t)] = in.doc_ids.defined() ? in.doc_ids.i32()[t] : 0;
  }
  kv_->set_docs(doc_, ctx);
  kv_->zero_grads();
  label_count_ = 0;
  for (int64_t t = 0; t < T; t++) label_count_ += in.labels.i32()[t] != kIgnoreIndex;
  if (label_norm <= 0) label_norm = double(label_count_);

  // forward: chunks in order fill the KV caches. SeCO takes each chunk's loss
  // from its backward pass, so this pass stops at the last block's K/V;
  // SpaCO backpropagates only some chunks and logs the loss of all from here.
  const bool spaco = lay_.plan.chunk_mode == ChunkMode::spaco;
  double loss_sum = 0;
  for (int64_t j = 0; j < k_; j++) {
    kv_->set_chunk(j, 1.f);
    const StepInput ci = chunk_input(j, in);
    if (!spaco) {
      step_->forward_kv(w, ci, ctx);
      continue;
    }
    const double l = step_->forward_loss(w, ci, ctx);
    loss_sum += l * double(step_->label_count());
  }
  // backward: chunks in reverse (SpaCO: those drawn), each rerun with grad
  const std::vector<int64_t> chosen = chosen_chunks(draw);
  const double pi = spaco ? double(lay_.plan.chunk_budget) / double(k_) : 1;
  for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) {
    kv_->set_chunk(*it, float(1.0 / pi));
    const double l = step_->run(w, grads, chunk_input(*it, in), ctx, label_norm * pi);
    if (!spaco) loss_sum += l * double(step_->label_count());
  }
  if (cp_) cp_->all_reduce_sum(&loss_sum, 1);  // every rank's slices
  return label_count_ > 0 ? loss_sum / double(label_count_) : 0.0;
}

}  // namespace longctx
