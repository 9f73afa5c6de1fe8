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
  cos_ = Buffer(mem, dev, Tag::workspace, {T, half});
  sin_ = Buffer(mem, dev, Tag::workspace, {T, half});
  for (int64_t l = 0; l < c.num_hidden_layers; l++) ckpt_.emplace_back(mem, dev, Tag::checkpoint, Shape{N, C});
  xL_ = Buffer(mem, dev, Tag::activations, {N, C});
  hf_ = Buffer(mem, dev, Tag::activations, {N, C});
  rstdf_ = Buffer(mem, dev, Tag::activations, {N});
  dhf_ = Buffer(mem, dev, Tag::workspace, {N, C});
  dx_ = Buffer(mem, dev, Tag::workspace, {N, C});
  acts_ = std::make_unique<ActBuffer>(block_act_table(c, B, T), mem, dev, Tag::activations);
  grads_ = std::make_unique<ActBuffer>(block_grad_table(c, B, T), mem, dev, Tag::workspace);

  int32_t* p = pos_.t().i32();
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) p[b * T + t] = int32_t(t);
  rope_tables(c, T, cos_.f32(), sin_.f32());
  shared_ = {B, T, pos_.t(), cos_.t(), sin_.t(), AttentionParams{}};
}

double GradStep::run(const ParamSet& w, ParamSet& grads, Tensor inputs, Tensor labels, Context& ctx) {
  const int64_t N = B_ * T_, L = c_.num_hidden_layers;
  CHECK(inputs.numel() == N && labels.numel() == N, "[grad_step] expected ", N, " inputs and labels, got ",
        inputs.numel(), " and ", labels.numel());
  copy_tensor(tokens_.t(), inputs.view({N}), ctx);
  copy_tensor(labels_.t(), labels.view({N}), ctx);
  label_count_ = 0;
  for (int64_t n = 0; n < N; n++) label_count_ += labels_.t().i32()[n] != kIgnoreIndex;
  const BlockActs acts = bind_acts(*acts_);
  const BlockGrads bg = bind_grads(*grads_);
  const float eps = float(c_.rms_norm_eps);

  // forward: keep each block's input, nothing else
  embedding_forward(L > 0 ? ckpt_[0].t() : xL_.t(), tokens_.t(), w.embed, ctx);
  for (int64_t l = 0; l < L; l++) {
    Tensor out = l + 1 < L ? ckpt_[size_t(l + 1)].t() : xL_.t();
    block_forward(out, ckpt_[size_t(l)].t(), w.layers[size_t(l)], acts, c_, shared_, ctx);
  }
  // final norm + LM head + loss; their gradients come out of the same pass
  rmsnorm_forward(hf_.t(), rstdf_.t(), xL_.t(), w.final_norm, eps, ctx);
  const double scale = label_count_ > 0 ? 1.0 / double(label_count_) : 0.0;
  const double loss = lm_head_loss(dhf_.t(), grads.lm_head, hf_.t(), w.lm_head, labels_.t(), scale, 0, ctx);
  rmsnorm_backward(dx_.t(), grads.final_norm, dhf_.t(), xL_.t(), w.final_norm, rstdf_.t(), ctx);

  // backward: recompute each block from its input, then backpropagate it
  for (int64_t l = L - 1; l >= 0; l--) {
    const Tensor inp = ckpt_[size_t(l)].t();
    block_forward(xL_.t(), inp, w.layers[size_t(l)], acts, c_, shared_, ctx);
    block_backward(dx_.t(), inp, w.layers[size_t(l)], grads.layers[size_t(l)], acts, bg, c_, shared_, ctx);
  }
  embedding_backward(grads.embed, dx_.t(), tokens_.t(), ctx);
  return loss;
}

}  // namespace longctx
