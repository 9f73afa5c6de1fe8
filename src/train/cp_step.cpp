#include "train/cp_step.h"

#include <limits>
#include <vector>

#include "core/check.h"
#include "ops/lm_head_loss.h"

namespace longctx {

CpKind parse_cp_kind(const std::string& s) {
  for (CpKind k : {CpKind::ulysses, CpKind::ring, CpKind::zigzag, CpKind::upipe, CpKind::hybrid})
    if (s == cp_kind_name(k)) return k;
  FAIL("--cp-kind: '", s, "' is not one of ulysses|upipe|ring|zigzag|hybrid");
}

const char* cp_kind_name(CpKind k) {
  switch (k) {
    case CpKind::ulysses: return "ulysses";
    case CpKind::ring: return "ring";
    case CpKind::zigzag: return "zigzag";
    case CpKind::upipe: return "upipe";
    case CpKind::hybrid: return "hybrid";
  }
  return "?";
}

CpStep::CpStep(const LlamaConfig& c, Memory& mem, Comm& comm, int64_t B, int64_t T, const Plan& plan,
               CpKind kind, int ulysses_group, int dp)
    : comm_(comm), B_(B), T_(T), kind_(kind) {
  const int W = comm.size();
  CHECK(dp >= 1 && W % dp == 0, "--dp ", dp, " does not divide the ", W, " ranks");
  CHECK(B % dp == 0, "--dp ", dp, ": the batch of ", B, " sequences does not split over ", dp,
        " data-parallel groups");
  const int P = W / dp;  // the CP degree
  dp_rank_ = comm.rank() / P, Bl_ = B / dp;
  if (dp > 1) dp_split_ = comm.split(dp_rank_, comm.rank() % P);
  Comm& cp = dp > 1 ? *dp_split_ : comm;
  cp_ = &cp;
  CHECK(!plan.chunked(), "[cp] chunk modes across ranks run in ChunkedStep");
  const int64_t unit = kind == CpKind::zigzag ? 2 * P : P;  // padded to whole chunks
  Tp_ = (T + unit - 1) / unit * unit;
  Tl_ = Tp_ / P;
  AttentionRunner* runner = nullptr;
  if (kind == CpKind::hybrid) {
    // Ulysses inside groups of U consecutive ranks, ring across the groups
    const int U = ulysses_group, r = cp.rank();
    CHECK(U >= 1 && P % U == 0, "cp-kind hybrid: --cp-ulysses ", U, " does not divide the ", P, " ranks");
    UlyssesAttention::check_layout(c, U);
    group_ = cp.split(r / U, r % U);
    ring_comm_ = cp.split(r % U, r / U);
    ulysses_ = std::make_unique<UlyssesAttention>(c, *group_, mem, Bl_, Tl_);
    LlamaConfig hc = c;  // the ring sees this rank's heads of the group's whole chunk
    hc.num_attention_heads = ulysses_->group_heads(), hc.num_key_value_heads = ulysses_->group_kv_heads();
    ring_ = std::make_unique<RingAttention>(hc, *ring_comm_, mem, Bl_, Tl_ * U, false);
    ulysses_->set_inner(ring_.get());
    runner = ulysses_.get();
  } else if (kind == CpKind::ulysses || kind == CpKind::upipe) {
    ulysses_ = std::make_unique<UlyssesAttention>(c, cp, mem, Bl_, Tl_, kind == CpKind::upipe);
    runner = ulysses_.get();
  } else {
    ring_ = std::make_unique<RingAttention>(c, cp, mem, Bl_, Tl_, kind == CpKind::zigzag);
    runner = ring_.get();
  }
  step_ = std::make_unique<GradStep>(c, mem, step_layout(c, plan, Bl_, Tl_), runner);
}

CpStep::~CpStep() = default;

void sum_over_ranks(Comm& comm, const Grads& g) {
  if (g.base) comm.all_reduce_sum(g.base->all().f32(), g.base->all().numel());
  if (g.lora) comm.all_reduce_sum(g.lora->all().f32(), g.lora->all().numel());
}

void CpStep::sum_grads(const Grads& g) { sum_over_ranks(comm_, g); }

double CpStep::run(const ParamSet& w, const Grads& g, const StepInput& in, Context& ctx, double label_norm) {
  const int r = cp_->rank(), P = cp_->size();
  CHECK(in.inputs.numel() == B_ * T_ && in.labels.numel() == B_ * T_, "[cp] expected ", B_, " x ", T_,
        " inputs and labels, got ", in.inputs.numel(), " and ", in.labels.numel());
  constexpr int32_t kPad = std::numeric_limits<int32_t>::min();
  const int64_t Bl = Bl_, b0 = dp_rank_ * Bl;  // this data-parallel group's rows [b0, b0 + Bl)
  std::vector<int32_t> docs(size_t(Bl * Tp_), kPad), tok(size_t(Bl * Tl_), 0),
      lab(size_t(Bl * Tl_), kIgnoreIndex), pos(size_t(Bl * Tl_), 0), doc(size_t(Bl * Tl_), kPad);
  int64_t labels = 0;  // over the whole batch: the loss is normalised globally
  for (int64_t i = 0; i < B_ * T_; i++) labels += in.labels.i32()[i] != kIgnoreIndex;
  for (int64_t b = 0; b < Bl; b++)
    for (int64_t t = 0; t < T_; t++)
      docs[size_t(b * Tp_ + t)] = in.doc_ids.defined() ? in.doc_ids.i32()[(b0 + b) * T_ + t] : 0;
  // this rank's rows: one contiguous chunk, or zigzag's two
  const auto segs = cp_segments(kind_ == CpKind::zigzag, P, r, Tl_);
  for (auto [start, len] : segs) {
    const int64_t local0 = start == segs[0].first ? 0 : Tl_ - len;
    for (int64_t b = 0; b < Bl; b++)
      for (int64_t k = 0; k < len; k++) {
        const int64_t t = start + k, o = b * Tl_ + local0 + k;
        if (t >= T_) continue;  // padding
        const int64_t i = (b0 + b) * T_ + t;
        tok[size_t(o)] = in.inputs.i32()[i], lab[size_t(o)] = in.labels.i32()[i];
        pos[size_t(o)] = in.positions.defined() ? in.positions.i32()[i] : int32_t(t);
        doc[size_t(o)] = docs[size_t(b * Tp_ + t)];
      }
  }
  label_count_ = labels;
  if (ulysses_ && kind_ != CpKind::hybrid) ulysses_->set_docs(docs, ctx);
  if (ring_) ring_->set_docs(docs, ctx);
  if (label_norm <= 0) label_norm = double(labels);
  const StepInput local{Tensor(tok.data(), {Bl, Tl_}, DType::I32), Tensor(lab.data(), {Bl, Tl_}, DType::I32),
                        Tensor(pos.data(), {Bl, Tl_}, DType::I32), Tensor(doc.data(), {Bl, Tl_}, DType::I32)};
  const double mean = step_->run(w, g, local, ctx, label_norm);
  double sums[1] = {mean * double(step_->label_count())};
  comm_.all_reduce_sum(sums, 1);  // every CP shard of every DP group
  return labels > 0 ? sums[0] / double(labels) : 0.0;
}

}  // namespace longctx
