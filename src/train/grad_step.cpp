#include "train/grad_step.h"

#include "model/rope_table.h"
#include "ops/embedding.h"
#include "ops/lm_head_loss.h"
#include "ops/rmsnorm.h"

namespace longctx {

GradStep::GradStep(const LlamaConfig& c, Memory& mem, int64_t B, int64_t T) : c_(c), B_(B), T_(T) {
  const int64_t N = B * T, C = c.hidden_size, half = c.head_dim / 2;
  const Tier dev = Tier::device;
  tokens_ = Buffer(mem, dev, Tag::data, {N}, DType::I32);
  labels_ = Buffer(mem, dev, Tag::data, {N}, DType::I32);
  pos_ = Buffer(mem, dev, Tag::workspace, {N}, DType::I32);
  docs_ = Buffer(mem, dev, Tag::workspace, {N}, DType::I32);
  cos_ = Buffer(mem, dev, Tag::workspace, {T, half});
  sin_ = Buffer(mem, dev, Tag::workspace, {T, half});
  for (int64_t l = 0; l < c.num_hidden_layers; l++)
    ckpt_.emplace_back(mem, dev, Tag::checkpoint, Shape{N, C});
  xL_ = Buffer(mem, dev, Tag::activations, {N, C});
  hf_ = Buffer(mem, dev, Tag::activations, {N, C});
  rstdf_ = Buffer(mem, dev, Tag::activations, {N});
  dhf_ = Buffer(mem, dev, Tag::workspace, {N, C});
  dx_ = Buffer(mem, dev, Tag::workspace, {N, C});
  acts_ = std::make_unique<ActBuffer>(block_act_table(c, B, T), mem, dev, Tag::activations);
  grads_ = std::make_unique<ActBuffer>(block_grad_table(c, B, T), mem, dev, Tag::workspace);

  rope_tables(c, T, cos_.f32(), sin_.f32());
  shared_ = {B, T, pos_.t(), cos_.t(), sin_.t(), AttentionParams{}};
}

double GradStep::run(const ParamSet& w, ParamSet& grads, Tensor inputs, Tensor labels, Context& ctx) {
  return run(w, grads, StepInput{inputs, labels, Tensor(), Tensor()}, ctx);
}

void GradStep::prepare(const StepInput& in, Context& ctx) {
  const int64_t N = B_ * T_;
  CHECK(in.inputs.numel() == N && in.labels.numel() == N, "[grad_step] expected ", N,
        " inputs and labels, got ", in.inputs.numel(), " and ", in.labels.numel());
  copy_tensor(tokens_.t(), in.inputs.view({N}), ctx);
  copy_tensor(labels_.t(), in.labels.view({N}), ctx);
  int32_t* pos = pos_.t().i32();
  if (in.positions.defined()) {
    copy_tensor(pos_.t(), in.positions.view({N}), ctx);
    for (int64_t n = 0; n < N; n++)
      CHECK(pos[n] >= 0 && pos[n] < T_, "[grad_step] position ", pos[n], " outside [0, ", T_, ")");
  } else {
    for (int64_t n = 0; n < N; n++) pos[n] = int32_t(n % T_);
  }
  shared_.attn.q_doc = shared_.attn.k_doc = Tensor();
  if (in.doc_ids.defined()) {
    copy_tensor(docs_.t(), in.doc_ids.view({N}), ctx);
    shared_.attn.q_doc = shared_.attn.k_doc = docs_.t().view({B_, T_});
  }
  label_count_ = 0;
  for (int64_t n = 0; n < N; n++) label_count_ += labels_.t().i32()[n] != kIgnoreIndex;
}

// Embedding, every block (keeping only block inputs), final norm into hf_.
void GradStep::forward(const ParamSet& w, Context& ctx) {
  const int64_t L = c_.num_hidden_layers;
  const BlockActs acts = bind_acts(*acts_);
  embedding_forward(L > 0 ? ckpt_[0].t() : xL_.t(), tokens_.t(), w.embed, ctx);
  for (int64_t l = 0; l < L; l++) {
    Tensor out = l + 1 < L ? ckpt_[size_t(l + 1)].t() : xL_.t();
    block_forward(out, ckpt_[size_t(l)].t(), w.layers[size_t(l)], acts, c_, shared_, ctx);
  }
  rmsnorm_forward(hf_.t(), rstdf_.t(), xL_.t(), w.final_norm, float(c_.rms_norm_eps), ctx);
}

double GradStep::forward_loss(const ParamSet& w, const StepInput& in, Context& ctx) {
  prepare(in, ctx);
  forward(w, ctx);
  if (label_count_ == 0) return 0.0;
  return lm_head_loss(Tensor(), Tensor(), hf_.t(), w.lm_head, labels_.t(), 1.0 / double(label_count_), 0,
                      ctx);
}

Tensor GradStep::forward_hidden(const ParamSet& w, const StepInput& in, Context& ctx) {
  prepare(in, ctx);
  forward(w, ctx);
  return hf_.t();
}

double GradStep::run(const ParamSet& w, ParamSet& grads, const StepInput& in, Context& ctx,
                     double label_norm) {
  prepare(in, ctx);
  forward(w, ctx);
  // LM head + loss; their gradients come out of the same pass
  if (label_norm <= 0) label_norm = double(label_count_);
  const double scale = label_norm > 0 ? 1.0 / label_norm : 0.0;
  const double scaled = lm_head_loss(dhf_.t(), grads.lm_head, hf_.t(), w.lm_head, labels_.t(), scale, 0, ctx);
  const double loss = label_count_ > 0 ? scaled * label_norm / double(label_count_) : 0.0;
  rmsnorm_backward(dx_.t(), grads.final_norm, dhf_.t(), xL_.t(), w.final_norm, rstdf_.t(), ctx);

  // backward: recompute each block from its input, then backpropagate it
  const BlockActs acts = bind_acts(*acts_);
  const BlockGrads bg = bind_grads(*grads_);
  for (int64_t l = c_.num_hidden_layers - 1; l >= 0; l--) {
    const Tensor inp = ckpt_[size_t(l)].t();
    block_forward(xL_.t(), inp, w.layers[size_t(l)], acts, c_, shared_, ctx);
    block_backward(dx_.t(), inp, w.layers[size_t(l)], grads.layers[size_t(l)], acts, bg, c_, shared_, ctx);
  }
  embedding_backward(grads.embed, dx_.t(), tokens_.t(), ctx);
  return loss;
}

}  // namespace longctx
