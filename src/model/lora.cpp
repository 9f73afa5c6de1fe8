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

// adapter_config.json as PEFT writes it. Every field read is type-checked so
// that a bad file fails with one line naming the file and the field; the
// PEFT options that change the adapter's math are refused, not ignored.
LoraConfig load_lora_config(const std::string& dir) {
  constexpr int64_t kMaxRank = int64_t(1) << 16;  // real ranks are 4..256; more is a corrupt file
  const std::string p = dir + "/adapter_config.json";
  std::ifstream f(p, std::ios::binary);
  CHECK(f.good(), p, ": adapter config not found");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    FAIL(p, ": not valid JSON: ", e.what());
  }
  CHECK(j.is_object(), p, ": not a JSON object (got ", j.type_name(), ")");
  auto field = [&](const char* k) -> const nlohmann::json& {
    const auto it = j.find(k);
    CHECK(it != j.end() && !it->is_null(), p, ": field '", k, "' is required");
    return *it;
  };
  auto flag = [&](const char* k) {
    const auto it = j.find(k);
    if (it == j.end() || it->is_null()) return false;
    CHECK(it->is_boolean(), p, ": field '", k, "' must be true or false, got ", it->type_name());
    return it->get<bool>();
  };
  const nlohmann::json& type = field("peft_type");
  CHECK(type.is_string() && type.get_ref<const std::string&>() == "LORA", p, ": peft_type ", type.dump(),
        " is not supported (only \"LORA\")");
  LoraConfig lc;
  const nlohmann::json& r = field("r");
  CHECK(r.is_number_integer(), p, ": field 'r' must be an integer, got ", r.type_name(), " ", r.dump());
  CHECK(r.is_number_unsigned() && r.get<uint64_t>() >= 1 && r.get<uint64_t>() <= uint64_t(kMaxRank), p,
        ": field 'r' must be in [1, ", kMaxRank, "], got ", r.dump());
  lc.rank = r.get<int64_t>();
  const nlohmann::json& alpha = field("lora_alpha");
  CHECK(alpha.is_number(), p, ": field 'lora_alpha' must be a number, got ", alpha.type_name());
  lc.alpha = alpha.get<double>();
  CHECK(std::isfinite(lc.alpha) && lc.alpha > 0, p, ": field 'lora_alpha' must be positive and finite, got ",
        alpha.dump());
  const nlohmann::json& targets = field("target_modules");
  CHECK(targets.is_array(), p, ": field 'target_modules' must be a list of module names, got ",
        targets.type_name(), " ", targets.dump().substr(0, 60),
        " (PEFT's \"all-linear\" and regex strings are not supported)");
  lc.targets.clear();
  for (const nlohmann::json& t : targets) {
    CHECK(t.is_string(), p, ": field 'target_modules' must hold strings, got ", t.type_name());
    lc.targets.push_back(t.get<std::string>());
  }
  CHECK(!flag("fan_in_fan_out"), p, ": fan_in_fan_out adapters are not supported");
  CHECK(!flag("use_rslora"), p, ": use_rslora adapters (scale alpha / sqrt(r)) are not supported");
  CHECK(!flag("use_dora"), p, ": use_dora adapters are not supported");
  try {
    validate_lora(lc);
  } catch (const Error& e) {
    FAIL(p, ": ", e.what());
  }
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
