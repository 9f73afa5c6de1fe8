#include "model/lora.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/check.h"
#include "io/safetensors.h"
#include "model/params.h"

namespace longctx {

const std::vector<std::string>& lora_target_names() {
  static const std::vector<std::string> n = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                             "gate_proj", "up_proj", "down_proj"};
  return n;
}

void validate_lora(const LoraConfig& lc) {
  CHECK(lc.rank >= 0, "lora: rank must be >= 0, got ", lc.rank);
  if (!lc.enabled()) return;
  CHECK(lc.alpha > 0, "lora: alpha must be > 0, got ", lc.alpha);
  CHECK(!lc.targets.empty(), "lora: no target modules (choose from q_proj k_proj v_proj o_proj gate_proj ",
        "up_proj down_proj)");
  for (const std::string& t : lc.targets) {
    bool ok = false;
    for (const std::string& n : lora_target_names()) ok |= n == t;
    CHECK(ok, "lora: unknown target module '", t,
          "' (choose from q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)");
  }
}

namespace {

int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }

// (OC, IC) of each target, in lora_target_names() order.
std::pair<int64_t, int64_t> target_shape(const LlamaConfig& c, int t) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, Cq = c.q_dim(), Ckv = c.kv_dim();
  switch (t) {
    case 0: return {Cq, C};
    case 1: return {Ckv, C};
    case 2: return {Ckv, C};
    case 3: return {C, Cq};
    case 4: return {F, C};
    case 5: return {F, C};
    default: return {C, F};
  }
}

std::string module_path(int layer, int t) {
  const std::string part = t <= 3 ? "self_attn." : "mlp.";
  return "base_model.model.model.layers." + std::to_string(layer) + "." + part +
         lora_target_names()[size_t(t)];
}

LoraPair& pair_of(LayerLora& l, int t) {
  LoraPair* p[] = {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down};
  return *p[t];
}

}  // namespace

std::vector<LoraSpec> lora_param_table(const LlamaConfig& c, const LoraConfig& lc) {
  validate_lora(lc);
  std::vector<LoraSpec> out;
  if (!lc.enabled()) return out;
  for (int l = 0; l < int(c.num_hidden_layers); l++)
    for (int t = 0; t < int(lora_target_names().size()); t++) {
      bool on = false;
      for (const std::string& s : lc.targets) on |= s == lora_target_names()[size_t(t)];
      if (!on) continue;
      const auto [OC, IC] = target_shape(c, t);
      out.push_back({module_path(l, t) + ".lora_A.weight", {lc.rank, IC}, l, t, false});
      out.push_back({module_path(l, t) + ".lora_B.weight", {OC, lc.rank}, l, t, true});
    }
  return out;
}

int64_t lora_param_bytes(const LlamaConfig& c, const LoraConfig& lc) {
  int64_t n = 0;
  for (const LoraSpec& s : lora_param_table(c, lc)) n += padded(s.shape.numel());
  return n * 4;
}

LoraSet::LoraSet(const LlamaConfig& c, const LoraConfig& lc, Memory& mem, Tier tier, Tag tag)
    : specs_(lora_param_table(c, lc)) {
  layers.resize(size_t(c.num_hidden_layers));
  storage_ = Buffer(mem, tier, tag, {std::max<int64_t>(lora_param_bytes(c, lc) / 4, 0)});
  storage_.zero();
  int64_t off = 0;
  for (const LoraSpec& s : specs_) {
    Tensor v(storage_.f32() + off, s.shape, DType::F32, tier);
    off += padded(s.shape.numel());
    views_.push_back(v);
    LoraPair& p = pair_of(layers[size_t(s.layer)], s.target);
    (s.is_b ? p.B : p.A) = v;
  }
}

void init_lora(LoraSet& s, uint64_t seed) {
  std::mt19937_64 g(seed);
  for (size_t i = 0; i < s.specs().size(); i++) {
    const LoraSpec& sp = s.specs()[i];
    float* p = s.tensor(i).f32();
    const int64_t n = sp.shape.numel();
    if (sp.is_b) {
      std::fill(p, p + n, 0.f);
      continue;
    }
    const double bound = 1.0 / std::sqrt(double(sp.shape[1]));
    std::uniform_real_distribution<double> u(-bound, bound);
    for (int64_t j = 0; j < n; j++) p[j] = float(u(g));
  }
}

void save_lora_peft(const std::string& dir, const LoraSet& s, const LoraConfig& lc, const std::string& base) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < s.specs().size(); i++) out.push_back({s.specs()[i].name, s.tensor(i)});
  save_safetensors(dir + "/adapter_model.safetensors", out);
  const nlohmann::json j = {
      {"peft_type", "LORA"},    {"task_type", "CAUSAL_LM"},       {"r", lc.rank},   {"lora_alpha", lc.alpha},
      {"lora_dropout", 0.0},    {"target_modules", lc.targets},   {"bias", "none"}, {"fan_in_fan_out", false},
      {"inference_mode", true}, {"base_model_name_or_path", base}};
  const std::string p = dir + "/adapter_config.json";
  std::ofstream(p + ".tmp") << j.dump(2) << "\n";
  fs::rename(p + ".tmp", p);
}

LoraConfig load_lora_config(const std::string& dir) {
  const std::string p = dir + "/adapter_config.json";
  std::ifstream f(p);
  CHECK(f.good(), p, ": adapter config not found");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    FAIL(p, ": not valid JSON: ", e.what());
  }
  CHECK(j.value("peft_type", "") == "LORA", p, ": peft_type '", j.value("peft_type", ""),
        "' is not supported (only LORA)");
  LoraConfig lc;
  lc.rank = j.at("r").get<int64_t>();
  lc.alpha = j.at("lora_alpha").get<double>();
  lc.targets = j.at("target_modules").get<std::vector<std::string>>();
  CHECK(!j.value("fan_in_fan_out", false), p, ": fan_in_fan_out adapters are not supported");
  validate_lora(lc);
  return lc;
}

void load_lora_peft(const std::string& dir, LoraSet& s) {
  SafeTensorsDir st(dir + "/adapter_model.safetensors");
  for (size_t i = 0; i < s.specs().size(); i++) {
    const LoraSpec& sp = s.specs()[i];
    CHECK(st.has(sp.name), dir, ": adapter tensor '", sp.name, "' is missing");
    st.read_f32(sp.name, s.tensor(i).f32(), sp.shape);
  }
}

void merge_lora(ParamSet& w, const LoraSet& s, const LoraConfig& lc) {
  const float sc = lc.scale();
  for (size_t l = 0; l < w.layers.size(); l++) {
    LayerParams& L = w.layers[l];
    const LayerLora& a = s.layers[l];
    const std::pair<const LoraPair*, Tensor> mods[] = {{&a.q, L.wq},      {&a.k, L.wk},       {&a.v, L.wv},
                                                       {&a.o, L.wo},      {&a.gate, L.wgate}, {&a.up, L.wup},
                                                       {&a.down, L.wdown}};
    for (const auto& [p, W] : mods) {
      if (!p->A.defined()) continue;
      const int64_t OC = W.dim(0), IC = W.dim(1), r = p->A.dim(0);
      const float *A = p->A.f32(), *B = p->B.f32();
      float* w = W.f32();
      for (int64_t o = 0; o < OC; o++)
        for (int64_t i = 0; i < IC; i++) {
          double acc = 0;
          for (int64_t k = 0; k < r; k++) acc += double(B[o * r + k]) * double(A[k * IC + i]);
          w[o * IC + i] += float(sc * acc);
        }
    }
  }
}

}  // namespace longctx
