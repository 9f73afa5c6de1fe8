#include "model/params.h"

#include <cmath>
#include <random>

#include "core/check.h"

namespace longctx {

bool is_norm(ParamKind k) {
  return k == ParamKind::ln1 || k == ParamKind::ln2 || k == ParamKind::final_norm || k == ParamKind::q_norm ||
         k == ParamKind::k_norm;
}

namespace {
bool is_bias(ParamKind k) {
  return k == ParamKind::bq || k == ParamKind::bk || k == ParamKind::bv || k == ParamKind::bo ||
         k == ParamKind::bgate || k == ParamKind::bup || k == ParamKind::bdown;
}
}  // namespace

std::vector<ParamSpec> llama_param_table(const LlamaConfig& c) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, HS = c.head_dim;
  const int64_t Cq = c.q_dim(), Ckv = c.kv_dim();
  const bool qkv_b = c.qkv_bias(), o_b = c.o_bias(), mlp_b = c.mlp_bias;
  std::vector<ParamSpec> t;
  t.push_back({"model.embed_tokens.weight", {V, C}, ParamKind::embed});
  for (int l = 0; l < int(c.num_hidden_layers); l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto add = [&](bool on, const std::string& name, Shape shape, ParamKind kind) {
      if (on) t.push_back({p + name, shape, kind, l});
    };
    add(true, "input_layernorm.weight", {C}, ParamKind::ln1);
    add(true, "self_attn.q_proj.weight", {Cq, C}, ParamKind::wq);
    add(qkv_b, "self_attn.q_proj.bias", {Cq}, ParamKind::bq);
    add(true, "self_attn.k_proj.weight", {Ckv, C}, ParamKind::wk);
    add(qkv_b, "self_attn.k_proj.bias", {Ckv}, ParamKind::bk);
    add(true, "self_attn.v_proj.weight", {Ckv, C}, ParamKind::wv);
    add(qkv_b, "self_attn.v_proj.bias", {Ckv}, ParamKind::bv);
    add(true, "self_attn.o_proj.weight", {C, Cq}, ParamKind::wo);
    add(o_b, "self_attn.o_proj.bias", {C}, ParamKind::bo);
    add(c.qk_norm(), "self_attn.q_norm.weight", {HS}, ParamKind::q_norm);
    add(c.qk_norm(), "self_attn.k_norm.weight", {HS}, ParamKind::k_norm);
    add(true, "post_attention_layernorm.weight", {C}, ParamKind::ln2);
    add(true, "mlp.gate_proj.weight", {F, C}, ParamKind::wgate);
    add(mlp_b, "mlp.gate_proj.bias", {F}, ParamKind::bgate);
    add(true, "mlp.up_proj.weight", {F, C}, ParamKind::wup);
    add(mlp_b, "mlp.up_proj.bias", {F}, ParamKind::bup);
    add(true, "mlp.down_proj.weight", {C, F}, ParamKind::wdown);
    add(mlp_b, "mlp.down_proj.bias", {C}, ParamKind::bdown);
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
    case ParamKind::bq: L->bq = v; break;
    case ParamKind::bk: L->bk = v; break;
    case ParamKind::bv: L->bv = v; break;
    case ParamKind::bo: L->bo = v; break;
    case ParamKind::q_norm: L->q_norm = v; break;
    case ParamKind::k_norm: L->k_norm = v; break;
    case ParamKind::bgate: L->bgate = v; break;
    case ParamKind::bup: L->bup = v; break;
    case ParamKind::bdown: L->bdown = v; break;
  }
}

void ParamSet::bind(int64_t first, int64_t n, float* to, Tier tier) {
  for (size_t i = 0; i < specs_.size(); i++)
    if (offsets_[i] >= first && offsets_[i] < first + n)
      set_view(i, to ? Tensor(to + (offsets_[i] - first), specs_[i].shape, DType::F32, tier) : Tensor());
}

std::vector<std::pair<int64_t, int64_t>> param_units(const ParamSet& p) {
  int64_t head = p.flat_size();
  for (size_t i = 0; i < p.specs().size(); i++)
    if (p.specs()[i].kind == ParamKind::final_norm) head = p.offset(i);
  std::vector<std::pair<int64_t, int64_t>> units = {{0, p.offset(1)}};
  for (int64_t l = 0; l < int64_t(p.layers.size()); l++) units.push_back(p.layer_range(l));
  units.emplace_back(head, p.flat_size());
  return units;
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
    if (is_norm(s.kind) || is_bias(s.kind)) {  // no random numbers drawn: the matrices stay as without them
      for (int64_t j = 0; j < n; j++) w[j] = is_norm(s.kind) ? 1.f : 0.f;
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
