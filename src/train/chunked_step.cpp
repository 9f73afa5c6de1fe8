#include "train/chunked_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/lm_head_loss.h"
#include "parallel/ulysses.h"
#include "train/kv_pages.h"

namespace longctx {

namespace {

constexpr int32_t kPadDoc = std::numeric_limits<int32_t>::min();  // padding rows: a document of their own

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

// Ring kinds with chunks: every rank runs its slice of each chunk's tokens with all heads. The chunk's whole
// K/V is gathered from the ranks' slices (NCCL runs an all-gather as a ring) for the inner KvPages, which
// keeps only this rank's slice of every page and gathers earlier pages the same way; the whole chunk's K/V
// gradients are reduce-scattered back, each rank keeping its slice's.
class SliceGather : public AttentionRunner {
 public:
  SliceGather(const LlamaConfig& c, Comm& comm, Memory& mem, int64_t Tc, KvPages& inner)
      : comm_(comm), inner_(inner), Tl_(Tc / comm.size()), n_(Tc * c.kv_dim()) {
    for (Buffer* b : {&k_, &v_, &dk_, &dv_}) *b = Buffer(mem, Tier::device, Tag::comm, {Tc, c.kv_dim()});
  }
  void forward(int64_t l, const BlockActs& a, Context& ctx) override {
    inner_.forward(l, whole(a, true, ctx), ctx);
  }
  void store_kv(int64_t l, const BlockActs& a, Context& ctx) override {  // only this rank's slice is stored
    inner_.store_kv(l, whole(a, false, ctx), ctx);
  }
  void backward(int64_t l, const BlockActs& a, const BlockGrads& g, Context& ctx) override {
    BlockGrads h = g;
    h.dk = dk_.t(), h.dv = dv_.t();
    inner_.backward(l, whole(a, true, ctx), h, ctx);
    for (auto [from, to] : {std::pair{dk_.t(), g.dk}, std::pair{dv_.t(), g.dv}}) {
      comm_.reduce_scatter_sum(from.f32(), n_);  // every rank's queries sent gradients to every slice
      copy_tensor(to, mine(from).view(to.shape), ctx);
    }
    bytes_sent_ += both_parts();
  }
  int64_t bytes_sent() const { return bytes_sent_; }

 private:
  Tensor mine(const Tensor& t) const { return t.slice0(Tl_ * comm_.rank(), Tl_); }
  // bytes this rank sends gathering (or reduce-scattering) K and V: its slice of each to every other rank
  int64_t both_parts() const { return 2 * (comm_.size() - 1) * (n_ / comm_.size()) * 4; }
  // a with K and V of the whole chunk (gathered from every rank when `gather`)
  BlockActs whole(const BlockActs& a, bool gather, Context& ctx) {
    BlockActs h = a;
    for (auto [from, to] : {std::pair{a.k, &k_}, std::pair{a.v, &v_}}) {
      copy_tensor(mine(to->t()), from.view(mine(to->t()).shape), ctx);
      if (gather) comm_.all_gather_parts(to->f32(), n_);
    }
    if (gather) bytes_sent_ += both_parts();
    h.k = k_.t(), h.v = v_.t();
    return h;
  }
  Comm& comm_;
  KvPages& inner_;
  int64_t Tl_, n_;
  Buffer k_, v_, dk_, dv_;  // (Tc, Ckv): the whole chunk's K/V and their gradients
  int64_t bytes_sent_ = 0;
};

ChunkedStep::ChunkedStep(const LlamaConfig& c, Memory& mem, int64_t T, const Plan& plan, Comm* cp,
                         CpKind kind, int ulysses_group)
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
  Plan local = lay_.plan;  // the block rows of this rank's slice
  local.chunk_size = Tl_;
  CHECK(kind == CpKind::ulysses || kind == CpKind::ring || kind == CpKind::hybrid,
        "[chunked_step] chunks run across ranks with cp-kind ulysses, ring or hybrid, not ",
        cp_kind_name(kind));
  const int U = kind == CpKind::hybrid ? ulysses_group : kind == CpKind::ring ? 1 : P_;
  CHECK(U >= 1 && P_ % U == 0, "cp-kind hybrid: --cp-ulysses ", U, " does not divide the ", P_, " ranks");
  if (U < P_) {  // ring across P / U groups (ring: groups of one): the cache in token slices
    Comm* ring = cp;
    LlamaConfig hc = c;  // the ring's heads: all of them, or those of this rank in its Ulysses group
    if (U > 1) {
      UlyssesAttention::check_layout(c, U);
      CHECK(UlyssesAttention::kv_sharing_ranks(c, U) == 1, "cp-kind hybrid with chunks: --cp-ulysses ", U,
            " exceeds the ", c.num_key_value_heads, " KV heads (the ranks of a group would share KV heads' ",
            "pages); use a group of at most ", c.num_key_value_heads, " ranks");
      group_ = cp->split(r_ / U, r_ % U);
      ring_ = cp->split(r_ % U, r_ / U);
      ring = ring_.get();
      ulysses_ = std::make_unique<UlyssesAttention>(c, *group_, mem, 1, Tl_);
      hc.num_attention_heads = ulysses_->group_heads(), hc.num_key_value_heads = ulysses_->group_kv_heads();
    }
    kv_ = std::make_unique<KvPages>(hc, lay_, k_, mem, ring, true);
    slices_ = std::make_unique<SliceGather>(hc, *ring, mem, lay_.Tc, *kv_);
    if (ulysses_) ulysses_->set_inner(slices_.get());
    AttentionRunner* outer = ulysses_ ? static_cast<AttentionRunner*>(ulysses_.get()) : slices_.get();
    step_ = std::make_unique<GradStep>(c, mem, step_layout(c, local, 1, T), outer);
    return;
  }
  ulysses_ = std::make_unique<UlyssesAttention>(c, *cp, mem, 1, Tl_);
  LlamaConfig hc = c;  // the cache holds this rank's heads of whole chunks
  hc.num_attention_heads = ulysses_->group_heads(), hc.num_key_value_heads = ulysses_->group_kv_heads();
  // more ranks than KV heads: the ranks that receive the same KV heads share their cache's storage
  if (UlyssesAttention::kv_sharing_ranks(c, P_) > 1) {
    const auto& heads = ulysses_->kv_heads_of_ranks();
    const int color = int(std::find(heads.begin(), heads.end(), heads[size_t(r_)]) - heads.begin());
    share_ = cp->split(color, r_);
  }
  kv_ = std::make_unique<KvPages>(hc, lay_, k_, mem, share_.get());
  ulysses_->set_inner(kv_.get());
  step_ = std::make_unique<GradStep>(c, mem, step_layout(c, local, 1, T), ulysses_.get());
}

int64_t ChunkedStep::cp_bytes_sent() const {
  return (ulysses_ ? ulysses_->bytes_sent() : 0) + (slices_ ? slices_->bytes_sent() : 0) +
         (cp_ ? kv_->bytes_sent() : 0);
}
int64_t ChunkedStep::kv_pages_read() const { return kv_->pages_read(); }

bool ChunkedStep::runs(int64_t j) const {
  return only_.empty() || std::find(only_.begin(), only_.end(), j) != only_.end();
}

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
  const int64_t T = lay_.T;
  CHECK(in.inputs.numel() > 0 && in.inputs.numel() % T == 0 && in.labels.numel() == in.inputs.numel(),
        "[chunked_step] expected rows of ", T, " inputs and labels, got ", in.inputs.numel(), " and ",
        in.labels.numel());
  // rows one after another through the same caches, under one normaliser: every row's labels
  const int64_t B = in.inputs.numel() / T;
  int64_t labels = 0;
  for (int64_t i = 0; i < B * T; i++) labels += in.labels.i32()[i] != kIgnoreIndex;
  if (label_norm <= 0) label_norm = double(labels);
  double loss_sum = 0;
  for (int64_t b = 0; b < B; b++) {
    auto row = [&](const Tensor& t) {
      return t.defined() ? Tensor(t.i32() + b * T, {1, T}, DType::I32) : Tensor();
    };
    // SpaCO draws each row's chunks on its own (row 0 as a batch of one would)
    const uint64_t row_draw = b == 0 ? draw : mix64(draw ^ (0x9e3779b97f4a7c15ull * uint64_t(b)));
    loss_sum += run_row(w, grads, {row(in.inputs), row(in.labels), row(in.positions), row(in.doc_ids)}, ctx,
                        label_norm, row_draw);
  }
  label_count_ = labels;
  return labels > 0 ? loss_sum / double(labels) : 0.0;
}

// One sequence: its loss summed over its labels (across ranks, over every rank's slices).
double ChunkedStep::run_row(const ParamSet& w, const Grads& grads, const StepInput& in, Context& ctx,
                            double label_norm, uint64_t draw) {
  const int64_t T = lay_.T, Tc = lay_.Tc;
  pos_.assign(size_t(T), 0), doc_.assign(size_t(k_ * Tc), kPadDoc);
  for (int64_t t = 0; t < T; t++) {
    pos_[size_t(t)] = in.positions.defined() ? in.positions.i32()[t] : int32_t(t);
    doc_[size_t(t)] = in.doc_ids.defined() ? in.doc_ids.i32()[t] : 0;
  }
  kv_->set_docs(doc_, std::vector<int32_t>(doc_.begin(), doc_.begin() + T), ctx);
  kv_->zero_grads();

  // forward: chunks in order fill the KV caches. SeCO takes each chunk's loss
  // from its backward pass, so this pass stops at the last block's K/V;
  // SpaCO backpropagates only some chunks and logs the loss of all from here.
  const bool spaco = lay_.plan.chunk_mode == ChunkMode::spaco;
  timings_.assign(size_t(k_), ChunkTiming{});
  double loss_sum = 0;
  for (int64_t j = 0; j < k_; j++) {
    if (!runs(j)) continue;
    const Clock::time_point t0 = Clock::now();
    kv_->set_chunk(j, 1.f);
    const StepInput ci = chunk_input(j, in);
    if (!spaco) {
      step_->forward_kv(w, ci, ctx);
    } else {
      const double l = step_->forward_loss(w, ci, ctx);
      loss_sum += l * double(step_->label_count());
    }
    if (!only_.empty()) {  // a probe: the chunk's time, after the backend's work (no sync otherwise)
      copy_sync(ctx);
      timings_[size_t(j)].forward_s = seconds_since(t0);
    }
  }
  // backward: chunks in reverse (SpaCO: those drawn), each rerun with grad
  const std::vector<int64_t> chosen = chosen_chunks(draw);
  const double pi = spaco ? double(lay_.plan.chunk_budget) / double(k_) : 1;
  for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) {
    if (!runs(*it)) continue;
    const Clock::time_point t0 = Clock::now();
    kv_->set_chunk(*it, float(1.0 / pi));
    const double l = step_->run(w, grads, chunk_input(*it, in), ctx, label_norm * pi);
    if (!spaco) loss_sum += l * double(step_->label_count());
    if (!only_.empty()) {
      copy_sync(ctx);
      timings_[size_t(*it)].backward_s = seconds_since(t0);
    }
  }
  if (cp_) cp_->all_reduce_sum(&loss_sum, 1);  // every rank's slices
  return loss_sum;
}

}  // namespace longctx
