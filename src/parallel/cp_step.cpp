#include "parallel/cp_step.h"

#include <limits>
#include <vector>

#include "core/check.h"
#include "ops/lm_head_loss.h"

namespace longctx {

CpKind parse_cp_kind(const std::string& s) {
  if (s == "ulysses") return CpKind::ulysses;
  for (const char* k : {"ring", "zigzag", "upipe", "hybrid"})
    if (s == k) FAIL("--cp-kind ", s, " is not built yet in this version (ulysses is)");
  FAIL("--cp-kind: '", s, "' is not one of ulysses|ring|zigzag|upipe|hybrid");
}

CpStep::CpStep(const LlamaConfig& c, Memory& mem, Comm& comm, int64_t B, int64_t T, const Plan& plan, CpKind)
    : comm_(comm), B_(B), T_(T) {
  const int P = comm.size();
  CHECK(!plan.chunked(), "plan: --chunk-mode ", chunk_mode_name(plan.chunk_mode),
        " clashes with context parallelism over ", P, " ranks (not combined yet)");
  Tp_ = (T + P - 1) / P * P;
  Tl_ = Tp_ / P;
  attn_ = std::make_unique<UlyssesAttention>(c, comm, mem, B, Tl_);
  step_ = std::make_unique<GradStep>(c, mem, step_layout(c, plan, B, Tl_), attn_.get());
}

CpStep::~CpStep() = default;

void CpStep::sum_grads(const Grads& g) {
  if (g.base) comm_.all_reduce_sum(g.base->all().f32(), g.base->all().numel());
  if (g.lora) comm_.all_reduce_sum(g.lora->all().f32(), g.lora->all().numel());
}

double CpStep::run(const ParamSet& w, const Grads& g, const StepInput& in, Context& ctx, double label_norm) {
  const int r = comm_.rank();
  CHECK(in.inputs.numel() == B_ * T_ && in.labels.numel() == B_ * T_, "[cp] expected ", B_, " x ", T_,
        " inputs and labels, got ", in.inputs.numel(), " and ", in.labels.numel());
  constexpr int32_t kPad = std::numeric_limits<int32_t>::min();
  std::vector<int32_t> docs(size_t(B_ * Tp_), kPad), tok(size_t(B_ * Tl_), 0), lab(size_t(B_ * Tl_), kIgnoreIndex),
      pos(size_t(B_ * Tl_), 0), doc(size_t(B_ * Tl_), kPad);
  int64_t labels = 0;
  for (int64_t b = 0; b < B_; b++)
    for (int64_t t = 0; t < T_; t++) {
      const int64_t i = b * T_ + t;
      docs[size_t(b * Tp_ + t)] = in.doc_ids.defined() ? in.doc_ids.i32()[i] : 0;
      labels += in.labels.i32()[i] != kIgnoreIndex;
      const int64_t lt = t - r * Tl_;  // this rank's rows [r*Tl, (r+1)*Tl)
      if (lt < 0 || lt >= Tl_) continue;
      const size_t o = size_t(b * Tl_ + lt);
      tok[o] = in.inputs.i32()[i], lab[o] = in.labels.i32()[i];
      pos[o] = in.positions.defined() ? in.positions.i32()[i] : int32_t(t);
      doc[o] = docs[size_t(b * Tp_ + t)];
    }
  label_count_ = labels;
  attn_->set_docs(docs);
  if (label_norm <= 0) label_norm = double(labels);
  const StepInput local{Tensor(tok.data(), {B_, Tl_}, DType::I32), Tensor(lab.data(), {B_, Tl_}, DType::I32),
                        Tensor(pos.data(), {B_, Tl_}, DType::I32), Tensor(doc.data(), {B_, Tl_}, DType::I32)};
  const double mean = step_->run(w, g, local, ctx, label_norm);
  double sums[1] = {mean * double(step_->label_count())};
  comm_.all_reduce_sum(sums, 1);
  return labels > 0 ? sums[0] / double(labels) : 0.0;
}

}  // namespace longctx
