#include "parallel/zero.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "ops/elementwise.h"

namespace longctx {

ZeroOptimizer::ZeroOptimizer(Tensor w, Tensor g, std::vector<NamedTensor> tensors, int stage, Comm& comm,
                             Memory& mem)
    : w_(w), g_(g), tensors_(std::move(tensors)), stage_(stage), comm_(comm), n_(w.numel()), mem_(mem) {
  CHECK(stage >= 0 && stage <= 2, "--zero ", stage,
        ": stages 0, 1 and 2 are built (3, parameters gathered per ", "block, is not yet)");
  CHECK(g.numel() == n_, "[zero] ", g.numel(), " gradients for ", n_, " parameters");
  for (const NamedTensor& t : tensors_) offset_.push_back((static_cast<float*>(t.t.ptr) - w.f32()));
  const int P = stage_ == 0 ? 1 : comm.size(), r = stage_ == 0 ? 0 : comm.rank();
  const int64_t per = (n_ + P - 1) / P;
  lo_ = std::min(n_, r * per), hi_ = std::min(n_, lo_ + per);
  m_ = Buffer(mem, w.tier, Tag::optim, {std::max<int64_t>(hi_ - lo_, 1)});
  v_ = Buffer(mem, w.tier, Tag::optim, {std::max<int64_t>(hi_ - lo_, 1)});
  m_.zero(), v_.zero();
}

void ZeroOptimizer::reduce_grads() {
  if (comm_.size() == 1) return;
  if (stage_ == 2)
    comm_.reduce_scatter_sum(g_.f32(), n_);  // only this rank's part is summed
  else
    comm_.all_reduce_sum(g_.f32(), n_);
}

double ZeroOptimizer::grad_sq_norm(Context& ctx) {
  if (stage_ < 2) return sum_squares(g_, ctx);
  double s = hi_ > lo_ ? sum_squares(g_.slice0(lo_, hi_ - lo_), ctx) : 0.0;
  comm_.all_reduce_sum(&s, 1);
  return s;
}

void ZeroOptimizer::scale_grads(float s, Context& ctx) {
  if (hi_ > lo_) scale_inplace(g_.slice0(lo_, hi_ - lo_), s, ctx);
}

void ZeroOptimizer::step(AdamWParams p, float weight_decay, Context& ctx) {
  for (size_t i = 0; i < tensors_.size(); i++) {  // each tensor's piece of this rank's part
    const int64_t a = std::max(lo_, offset_[i]), b = std::min(hi_, offset_[i] + tensors_[i].t.numel());
    if (a >= b) continue;
    p.weight_decay = tensors_[i].t.ndim() >= 2 ? weight_decay : 0.f;  // no decay on norms
    adamw_update(w_.slice0(a, b - a), g_.slice0(a, b - a), m_.t().slice0(a - lo_, b - a),
                 v_.t().slice0(a - lo_, b - a), p, ctx);
  }
  if (stage_ > 0 && comm_.size() > 1) comm_.all_gather_parts(w_.f32(), n_);
}

void ZeroOptimizer::gather_state(std::vector<NamedTensor>& m, std::vector<NamedTensor>& v) {
  if (!mfull_.t().defined()) {
    mfull_ = Buffer(mem_, Tier::host, Tag::optim, {n_});
    vfull_ = Buffer(mem_, Tier::host, Tag::optim, {n_});
  }
  mfull_.zero(), vfull_.zero();
  if (hi_ > lo_) {
    std::memcpy(mfull_.f32() + lo_, m_.f32(), size_t(hi_ - lo_) * 4);
    std::memcpy(vfull_.f32() + lo_, v_.f32(), size_t(hi_ - lo_) * 4);
  }
  if (stage_ > 0 && comm_.size() > 1) {
    comm_.all_gather_parts(mfull_.f32(), n_);
    comm_.all_gather_parts(vfull_.f32(), n_);
  }
  m.clear(), v.clear();
  for (size_t i = 0; i < tensors_.size(); i++) {
    const Shape s = tensors_[i].t.shape;
    m.push_back({tensors_[i].name, Tensor(mfull_.f32() + offset_[i], s, DType::F32, Tier::host)});
    v.push_back({tensors_[i].name, Tensor(vfull_.f32() + offset_[i], s, DType::F32, Tier::host)});
  }
}

void ZeroOptimizer::load_state(const std::vector<NamedTensor>& m, const std::vector<NamedTensor>& v) {
  CHECK(m.size() == tensors_.size() && v.size() == tensors_.size(), "[zero] optimizer state of ", m.size(),
        " tensors for ", tensors_.size());
  for (size_t i = 0; i < tensors_.size(); i++) {
    const int64_t a = std::max(lo_, offset_[i]), b = std::min(hi_, offset_[i] + tensors_[i].t.numel());
    if (a >= b) continue;
    std::memcpy(m_.f32() + (a - lo_), m[i].t.f32() + (a - offset_[i]), size_t(b - a) * 4);
    std::memcpy(v_.f32() + (a - lo_), v[i].t.f32() + (a - offset_[i]), size_t(b - a) * 4);
  }
}

}  // namespace longctx
