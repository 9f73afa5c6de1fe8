#include "train/grad_step.h"

#include <algorithm>

#include "model/rope_table.h"
#include "ops/embedding.h"
#include "ops/lm_head_loss.h"
#include "ops/rmsnorm.h"

namespace longctx {

GradStep::GradStep(const LlamaConfig& c, Memory& mem, int64_t B, int64_t T, const Plan& plan)
    : GradStep(c, mem, step_layout(c, plan, B, T), nullptr) {
  CHECK(!lay_.plan.chunked(), "[grad_step] chunk-mode ", chunk_mode_name(lay_.plan.chunk_mode),
        " runs in ChunkedStep, not GradStep");
}

GradStep::GradStep(const LlamaConfig& c, Memory& mem, const StepLayout& lay, AttentionRunner* runner)
    : c_(c), B_(lay.B), T_(lay.Tc), lay_(lay) {
  const int64_t B = B_, T = T_, N = B * T, C = c.hidden_size, half = c.head_dim / 2;
  const Tier dev = Tier::device;
  tokens_ = Buffer(mem, dev, Tag::data, {N}, DType::I32);
  labels_ = Buffer(mem, dev, Tag::data, {N}, DType::I32);
  pos_ = Buffer(mem, dev, Tag::workspace, {N}, DType::I32);
  docs_ = Buffer(mem, dev, Tag::workspace, {N}, DType::I32);
  // a rope row per token, from its position: any position (packed documents,
  // chunks of a longer sequence, skipped positions of short samples)
  cos_ = Buffer(mem, dev, Tag::workspace, {N, half});
  sin_ = Buffer(mem, dev, Tag::workspace, {N, half});
  suffix_idx_ = Buffer(mem, dev, Tag::workspace, {2 * N}, DType::I32);
  // the final norm runs fused with the LM head + loss, one loss tile of rows at a time
  const int64_t tile = std::min(lay.loss_tile, N);
  xL_ = Buffer(mem, dev, Tag::activations, {N, C});
  hf_ = Buffer(mem, dev, Tag::activations, {tile, C});
  rstdf_ = Buffer(mem, dev, Tag::activations, {tile});
  dhf_ = Buffer(mem, dev, Tag::workspace, {tile, C});
  dx_ = Buffer(mem, dev, Tag::workspace, {N, C});
  mem_ = &mem;
  scratch_ = std::make_unique<ActBuffer>(lay_.scratch, mem, dev, Tag::activations);
  grads_ = std::make_unique<ActBuffer>(lay_.grads, mem, dev, Tag::workspace);
  saved_ = std::make_unique<SavedStore>(lay_, c.num_hidden_layers, mem);

  shared_ = {B, T, pos_.t(), cos_.t(), sin_.t(), AttentionParams{}, Tensor(), Tensor(), 0, runner, 0};
  // GPU memory: host staging for what prepare() builds on the host (labels, positions, documents,
  // rope rows, suffix rows), in the order host_of() indexes them
  staged_ = !mem.host_accessible(dev);
  if (staged_)
    for (const Buffer* b : host_built())
      staging_.emplace_back(mem, Tier::host, Tag::workspace, b->t().shape, b->t().dtype);
  if (lay_.plan.lora.enabled()) {
    shared_.lora_scale = lay_.plan.lora.scale();
    shared_.lora_u = grads_->get("lora_u"), shared_.lora_g = grads_->get("lora_g");
  }
}

GradStep::~GradStep() = default;

double GradStep::run(const ParamSet& w, ParamSet& grads, Tensor inputs, Tensor labels, Context& ctx) {
  return run(w, grads, StepInput{inputs, labels, Tensor(), Tensor()}, ctx);
}

void GradStep::prepare(const StepInput& in, Context& ctx, bool allow_suffix) {
  const int64_t N = B_ * T_;
  CHECK(in.inputs.numel() == N && in.labels.numel() == N, "[grad_step] expected ", N,
        " inputs and labels, got ", in.inputs.numel(), " and ", in.labels.numel());
  copy_tensor(tokens_.t(), in.inputs.view({N}), ctx);
  // Host code builds positions, rope rows, labels and the suffix rows: in place on the CPU backend,
  // in the host staging buffers (then copied) when the device tier is GPU memory.
  const Tensor hlab = host_of(labels_), hpos = host_of(pos_), hdocs = host_of(docs_), hcos = host_of(cos_),
               hsin = host_of(sin_), hsuf = host_of(suffix_idx_);
  copy_tensor(hlab, in.labels.view({N}), ctx);
  int32_t* pos = host_i32(hpos, ctx, "grad_step positions");
  if (in.positions.defined()) {
    copy_tensor(hpos, in.positions.view({N}), ctx);
    for (int64_t n = 0; n < N; n++) CHECK(pos[n] >= 0, "[grad_step] negative position ", pos[n]);
  } else {
    for (int64_t n = 0; n < N; n++) pos[n] = int32_t(n % T_);
  }
  rope_rows(c_, pos, N, host_f32(hcos, ctx, "grad_step rope"), host_f32(hsin, ctx, "grad_step rope"));
  for (int64_t n = 0; n < N; n++) pos[n] = int32_t(n);  // rope then indexes them by row
  shared_.attn.q_doc = shared_.attn.k_doc = Tensor();
  if (in.doc_ids.defined()) {
    copy_tensor(hdocs, in.doc_ids.view({N}), ctx);
    // rows that are one document each need no document mask (so the GPU's fused attention can run)
    const int32_t* d = host_i32(hdocs, ctx, "grad_step docs");
    bool packed = false;
    for (int64_t n = 0; n < N && !packed; n++) packed = d[n] != d[n - n % T_];
    if (packed) shared_.attn.q_doc = shared_.attn.k_doc = docs_.t().view({B_, T_});
  }
  int32_t* lab = host_i32(hlab, ctx, "grad_step labels");
  label_count_ = 0;
  for (int64_t n = 0; n < N; n++) label_count_ += lab[n] != kIgnoreIndex;
  find_suffix(lab, host_i32(hsuf, ctx, "grad_step suffix"), host_i32(hdocs, ctx, "grad_step docs"),
              shared_.attn.q_doc.defined(), allow_suffix);
  if (staged_)
    for (size_t i = 0; i < staging_.size(); i++) copy_tensor(host_built()[i]->t(), staging_[i].t(), ctx);
}

// The last block runs on the suffix of rows from the first label of any row
// on (at least one row): the rows before it reach no loss through it.
void GradStep::find_suffix(int32_t* lab, int32_t* spos, const int32_t* doc, bool docs, bool allow_suffix) {
  suffix_ = SuffixRows{};
  const int64_t L = c_.num_hidden_layers, N = B_ * T_;
  if (!allow_suffix || !suffix_allowed_ || L == 0 || shared_.runner || T_ < 2) return;
  int64_t S = 1;
  for (int64_t b = 0; b < B_; b++)
    for (int64_t t = 0; t < T_ - S; t++)
      if (lab[b * T_ + t] != kIgnoreIndex) {
        S = T_ - t;
        break;
      }
  if (S == T_) return;
  int32_t* sdoc = spos + N;
  for (int64_t b = 0; b < B_; b++)
    for (int64_t i = 0; i < S; i++) {  // in place: row b*S + i <= b*T + T-S + i, read before written
      const int64_t from = b * T_ + T_ - S + i, to = b * S + i;
      spos[to] = int32_t(from);
      lab[to] = lab[from];
      if (docs) sdoc[to] = doc[from];
    }
  suffix_.S = S;
  suffix_.pos = suffix_idx_.t().slice0(0, B_ * S);
  if (docs) suffix_.q_doc = suffix_idx_.t().slice0(N, B_ * S).view({B_, S});
}

Tensor GradStep::host_of(const Buffer& b) const {
  if (!staged_) return b.t();
  const auto bufs = host_built();
  return staging_[size_t(std::find(bufs.begin(), bufs.end(), &b) - bufs.begin())].t();
}

// Embedding and every block (saving what the plan keeps) into xL_. kv_only:
// chunked training's first pass, which only fills the runner's K/V caches (the
// last block stops at its K/V; nothing is moved off the device).
void GradStep::forward(const ParamSet& w, Context& ctx, bool kv_only) {
  const int64_t L = c_.num_hidden_layers;
  if (L == 0 && kv_only) return;
  unit_begin(0, true, false);
  embedding_forward(L == 0 ? xL_.t() : saved_->forward_set(0).get("inp"), tokens_.t(), w.embed, ctx);
  unit_end(0, true, false);
  for (int64_t l = 0; l < L; l++) {
    if (suffix_.S > 0 && l + 1 == L) return;  // suffix_forward runs the last block
    const ActBuffer& set = saved_->forward_set(l);
    const BlockActs a = acts_of(set);
    unit_begin(int(l) + 1, true, false);
    const LayerParams lw = layer(w, l);
    shared_.layer = l;
    if (kv_only && l + 1 == L) {  // no attention, no MLP, no head
      attn_half_kv(set.get("inp"), lw, a, c_, shared_, ctx);
      unit_end(int(l) + 1, true, false);
      return;
    }
    attn_half_forward(set.get("inp"), lw, a, c_, shared_, ctx);
    // the next block's set is taken only now, so that moving block l-1's set
    // out of the same staging slot overlaps with this attention half
    const Tensor out = l + 1 < L ? saved_->forward_set(l + 1).get("inp") : xL_.t();
    mlp_half_forward(out, lw, a, c_, shared_, ctx);
    unit_end(int(l) + 1, true, false);
    if (!kv_only) saved_->forward_done(l);
  }
}

void GradStep::forward_kv(const ParamSet& w, const StepInput& in, Context& ctx) {
  prepare(in, ctx);
  forward(w, ctx, /*kv_only=*/true);
}

// Blocks in reverse: bring back (or recompute) what each one's backward needs.
LayerParams GradStep::layer(const ParamSet& w, int64_t l) const {
  LayerParams p = w.layers[size_t(l)];
  if (adapters_) p.lora = adapters_->layers[size_t(l)];
  return p;
}

void GradStep::set_adapters(const LoraSet* a) {
  CHECK(!a || shared_.lora_u.defined(), "[grad_step] adapters given but the plan has no lora rank");
  adapters_ = a;
}

LayerParams GradStep::layer_grads(const Grads& g, int64_t l) const {
  LayerParams dw;  // base gradients only when the base trains
  if (g.base) dw = g.base->layers[size_t(l)];
  if (g.lora) dw.lora = g.lora->layers[size_t(l)];
  return dw;
}

void GradStep::suffix_forward(const ParamSet& w, Context& ctx) {
  const int64_t l = c_.num_hidden_layers - 1;
  const ActBuffer& set = saved_->forward_set(l);
  const BlockActs a = acts_of(set);
  unit_begin(int(l) + 1, true, false);
  const LayerParams lw = layer(w, l);
  shared_.layer = l;
  attn_half_forward_suffix(set.get("inp"), lw, a, c_, shared_, suffix_, ctx);
  mlp_half_forward(xL_.t().slice0(0, head_rows()), lw, suffix_acts(a, c_, shared_, suffix_), c_, shared_,
                   ctx);
  unit_end(int(l) + 1, true, false);
  saved_->forward_done(l);
}

// The suffix's last block needs no recompute: its rows are still there from
// suffix_forward (a tiled MLP recomputes its tiles, as always).
void GradStep::suffix_backward(const ParamSet& w, const Grads& grads, Context& ctx) {
  const int64_t l = c_.num_hidden_layers - 1, Ms = head_rows();
  const ActBuffer& set = saved_->backward_set(l);
  const BlockActs a = acts_of(set);
  unit_begin(int(l) + 1, true, grads.base != nullptr);
  const LayerParams lw = layer(w, l), dw = layer_grads(grads, l);
  shared_.layer = l;
  const BlockGrads bg = bind_grads(*grads_);
  mlp_half_backward(dx_.t().slice0(0, Ms), lw, dw, suffix_acts(a, c_, shared_, suffix_), bg, c_, shared_,
                    ctx);
  // xL_ is free after the head: it keeps the residual's share
  attn_half_backward_suffix(dx_.t(), xL_.t().slice0(0, Ms), set.get("inp"), lw, dw, a, bg, c_, shared_,
                            suffix_, ctx);
  unit_end(int(l) + 1, true, grads.base != nullptr);
}

void GradStep::backward(const ParamSet& w, const Grads& grads, Context& ctx) {
  const BlockGrads bg = bind_grads(*grads_);
  const int64_t last = c_.num_hidden_layers - 1 - (suffix_.S > 0 ? 1 : 0);
  for (int64_t l = last; l >= 0; l--) {
    const ActBuffer& set = saved_->backward_set(l);
    const BlockActs a = acts_of(set);
    const Tensor inp = set.get("inp");
    unit_begin(int(l) + 1, true, grads.base != nullptr);
    const LayerParams lw = layer(w, l), dw = layer_grads(grads, l);
    shared_.layer = l;
    switch (lay_.plan.recompute) {
      case Recompute::full:
        attn_half_forward(inp, lw, a, c_, shared_, ctx);
        if (lay_.mlp_tile == lay_.N) mlp_half_forward(xL_.t(), lw, a, c_, shared_, ctx);  // xL_: free by now
        break;
      case Recompute::selective:
        attn_half_recompute(inp, lw, a, c_, shared_, ctx);
        if (lay_.mlp_tile == lay_.N) mlp_half_forward(xL_.t(), lw, a, c_, shared_, ctx);
        break;
      case Recompute::none: break;
    }
    block_backward(dx_.t(), inp, lw, dw, a, bg, c_, shared_, ctx);
    unit_end(int(l) + 1, true, grads.base != nullptr);
  }
  saved_->finish();
}

// Final norm + LM head + loss over row tiles of xL_: hf_ and dhf_ hold one
// tile. With grads, dx_ = d(loss)/d(xL) and the head's gradients accumulate.
double GradStep::head_loss(const ParamSet& w, const Grads* grads, double scale, int64_t N, Context& ctx) {
  const int64_t tile = hf_.t().dim(0);
  const float eps = float(c_.rms_norm_eps);
  const bool g = grads && grads->base, tied = c_.tie_word_embeddings;
  unit_begin(head_unit(), true, g);
  if (tied) unit_begin(0, true, g);  // the head is the embedding
  const Tensor dlm = g ? grads->base->lm_head : Tensor();
  const Tensor dnorm = g ? grads->base->final_norm : Tensor();
  double sum = 0;
  for (int64_t r0 = 0; r0 < N; r0 += tile) {
    const int64_t m = std::min(tile, N - r0);
    const Tensor x = xL_.t().slice0(r0, m), h = hf_.t().slice0(0, m), rs = rstdf_.t().slice0(0, m);
    rmsnorm_forward(h, rs, x, w.final_norm, eps, ctx);
    if (!grads) {
      sum += lm_head_loss(Tensor(), Tensor(), h, w.lm_head, labels_.t().slice0(r0, m), scale, m, ctx);
      continue;
    }
    const Tensor dh = dhf_.t().slice0(0, m);
    sum += lm_head_loss(dh, dlm, h, w.lm_head, labels_.t().slice0(r0, m), scale, m, ctx);
    rmsnorm_backward(dx_.t().slice0(r0, m), dnorm, dh, x, w.final_norm, rs, ctx);
  }
  if (tied) unit_end(0, true, g);
  unit_end(head_unit(), true, g);
  return sum;
}

double GradStep::forward_loss(const ParamSet& w, const StepInput& in, Context& ctx) {
  prepare(in, ctx);
  forward(w, ctx);
  if (suffix_.S > 0) suffix_forward(w, ctx);
  // the head runs even without labels: under ZeRO-3 every rank must take part in its gather
  const double sum =
      head_loss(w, nullptr, label_count_ > 0 ? 1.0 / double(label_count_) : 0.0, head_rows(), ctx);
  return label_count_ > 0 ? sum : 0.0;
}

Tensor GradStep::forward_hidden(const ParamSet& w, const StepInput& in, Context& ctx) {
  CHECK(!hook_, "[grad_step] forward_hidden is for evaluation on whole weights, not under ZeRO's unit hook");
  prepare(in, ctx, /*allow_suffix=*/false);
  forward(w, ctx);
  // evaluation only: the whole (N, C) of final-norm states, outside the training layout
  const int64_t N = B_ * T_, C = c_.hidden_size;
  if (!hidden_.t().defined()) {
    hidden_ = Buffer(*mem_, Tier::device, Tag::activations, {N, C});
    hidden_rstd_ = Buffer(*mem_, Tier::device, Tag::activations, {N});
  }
  rmsnorm_forward(hidden_.t(), hidden_rstd_.t(), xL_.t(), w.final_norm, float(c_.rms_norm_eps), ctx);
  return hidden_.t();
}

double GradStep::run(const ParamSet& w, const Grads& grads, const StepInput& in, Context& ctx,
                     double label_norm) {
  CHECK(grads.base || grads.lora, "[grad_step] no gradients asked for");
  CHECK(!grads.lora || adapters_, "[grad_step] adapter gradients asked for without adapters");
  prepare(in, ctx);
  forward(w, ctx);
  // LM head + loss; their gradients come out of the same pass
  if (label_norm <= 0) label_norm = double(label_count_);
  const double scale = label_norm > 0 ? 1.0 / label_norm : 0.0;
  if (suffix_.S > 0) suffix_forward(w, ctx);
  const double scaled = head_loss(w, &grads, scale, head_rows(), ctx);
  const double loss = label_count_ > 0 ? scaled * label_norm / double(label_count_) : 0.0;

  if (suffix_.S > 0) suffix_backward(w, grads, ctx);
  backward(w, grads, ctx);
  if (grads.base) {
    unit_begin(0, false, true);  // the embedding's gradients only
    embedding_backward(grads.base->embed, dx_.t(), tokens_.t(), ctx);
    unit_end(0, false, true);
  }
  return loss;
}

}  // namespace longctx
