#include "model/params.h"

#include <cmath>
#include <random>

#include "core/check.h"

namespace longctx {

std::vector<ParamSpec> llama_param_table(const LlamaConfig& c) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t Cq = c.q_dim(), Ckv = c.kv_dim();
  std::vector<ParamSpec> t;
  t.push_back({"model.embed_tokens.weight", {V, C}, ParamKind::embed});
  for (int l = 0; l < int(c.num_hidden_layers); l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {C}, ParamKind::ln1, l});
    t.push_back({p + "self_attn.q_proj.weight", {Cq, C}, ParamKind::wq, l});
    t.push_back({p + "self_attn.k_proj.weight", {Ckv, C}, ParamKind::wk, l});
    t.push_back({p + "self_attn.v_proj.weight", {Ckv, C}, ParamKind::wv, l});
    t.push_back({p + "self_attn.o_proj.weight", {C, Cq}, ParamKind::wo, l});
    t.push_back({p + "post_attention_layernorm.weight", {C}, ParamKind::ln2, l});
    t.push_back({p + "mlp.gate_proj.weight", {F, C}, ParamKind::wgate, l});
    t.push_back({p + "mlp.up_proj.weight", {F, C}, ParamKind::wup, l});
    t.push_back({p + "mlp.down_proj.weight", {C, F}, ParamKind::wdown, l});
  }
  t.push_back({"model.norm.weight", {C}, ParamKind::final_norm});
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {V, C}, ParamKind::lm_head});
  return t;
}

namespace {
int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }  // 64-byte aligned views
}  // namespace

ParamSet::ParamSet(const LlamaConfig& c) : specs_(llama_param_table(c)), tied_(c.tie_word_embeddings) {
  layers.resize(size_t(c.num_hidden_layers));
  views_.resize(specs_.size());
  for (const auto& s : specs_) {
    offsets_.push_back(flat_size_);
    flat_size_ += padded(s.shape.numel());
  }
}

ParamSet::ParamSet(const LlamaConfig& c, Memory& mem, Tier tier, Tag tag) : ParamSet(c) {
  storage_ = Buffer(mem, tier, tag, {flat_size_});
  storage_.zero();
  bind(0, flat_size_, storage_.f32(), tier);
}

void ParamSet::set_view(size_t i, Tensor v) {
  const ParamSpec& s = specs_[i];
  views_[i] = v;
  LayerParams* L = s.layer >= 0 ? &layers[size_t(s.layer)] : nullptr;
  switch (s.kind) {
    case ParamKind::embed:
      embed = v;
      if (tied_) lm_head = v;
      break;
    case ParamKind::final_norm: final_norm = v; break;
    case ParamKind::lm_head: lm_head = v; break;
    case ParamKind::ln1: L->ln1 = v; break;
    case ParamKind::wq: L->wq = v; break;
    case ParamKind::wk: L->wk = v; break;
    case ParamKind::wv: L->wv = v; break;
    case ParamKind::wo: L->wo = v; break;
    case ParamKind::ln2: L->ln2 = v; break;
    case ParamKind::wgate: L->wgate = v; break;
    case ParamKind::wup: L->wup = v; break;
    case ParamKind::wdown: L->wdown = v; break;
  }
}

void ParamSet::bind(int64_t first, int64_t n, float* to, Tier tier) {
  for (size_t i = 0; i < specs_.size(); i++)
    if (offsets_[i] >= first && offsets_[i] < first + n)
      set_view(i, to ? Tensor(to + (offsets_[i] - first), specs_[i].shape, DType::F32, tier) : Tensor());
}

std::pair<int64_t, int64_t> ParamSet::layer_range(int64_t l) const {
  int64_t b = -1, e = -1;
  for (size_t i = 0; i < specs_.size(); i++)
    if (specs_[i].layer == l) {
      if (b < 0) b = offsets_[i];
      e = offsets_[i] + padded(specs_[i].shape.numel());
    }
  CHECK(b >= 0, "[params] no block ", l);
  return {b, e};
}

Tensor ParamSet::find(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); i++)
    if (specs_[i].name == name) return views_[i];
  return Tensor();
}

void init_params_random(ParamSet& p, const LlamaConfig& c, uint64_t seed) {
  std::mt19937_64 g(seed);
  for (size_t i = 0; i < p.specs().size(); i++) {
    const ParamSpec& s = p.specs()[i];
    float* w = p.tensor(i).f32();
    const int64_t n = s.shape.numel();
    const bool norm = s.kind == ParamKind::ln1 || s.kind == ParamKind::ln2 || s.kind == ParamKind::final_norm;
    if (norm) {
      for (int64_t j = 0; j < n; j++) w[j] = 1.f;
      continue;
    }
    // Box-Muller on 53-bit uniforms: the same numbers on every platform.
    for (int64_t j = 0; j < n; j += 2) {
      const double u1 = (double(g() >> 11) + 1.0) * 0x1.0p-53, u2 = double(g() >> 11) * 0x1.0p-53;
      const double r = std::sqrt(-2.0 * std::log(u1)) * c.initializer_range;
      w[j] = float(r * std::cos(2 * M_PI * u2));
      if (j + 1 < n) w[j + 1] = float(r * std::sin(2 * M_PI * u2));
    }
  }
}

}  // namespace longctx
