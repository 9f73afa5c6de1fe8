#include "model/config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"

namespace longctx {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Typed, optional-aware access to one JSON object. A null value counts as
// absent (HF writes e.g. "head_dim": null); a value of the wrong type is an
// error naming the field and the file.
class Fields {
 public:
  Fields(const json& j, const std::string& where, std::string prefix = "")
      : j_(j), where_(where), prefix_(std::move(prefix)) {}

  bool has(const char* k) const { return j_.contains(k) && !j_[k].is_null(); }
  [[noreturn]] void bad(const char* k, const std::string& what) const {
    FAIL(where_, ": field '", prefix_, k, "' ", what);
  }
  const json& need(const char* k) const {
    if (!has(k)) bad(k, "is required");
    return j_[k];
  }

  int64_t i64(const char* k) const {
    const json& v = need(k);
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      bad(k, "is too large: " + v.dump());
    if (v.is_number_integer()) return v.get<int64_t>();
    // Integral floats (e.g. 128.0) are harmless; anything else is a typo.
    if (v.is_number_float() && std::nearbyint(v.get<double>()) == v.get<double>() &&
        std::abs(v.get<double>()) < 9e15)
      return int64_t(v.get<double>());
    bad(k, "must be an integer, got " + describe(v));
  }
  int64_t i64(const char* k, int64_t def) const { return has(k) ? i64(k) : def; }
  double f64(const char* k) const {
    const json& v = need(k);
    if (!v.is_number()) bad(k, "must be a number, got " + describe(v));
    return v.get<double>();
  }
  double f64(const char* k, double def) const { return has(k) ? f64(k) : def; }
  bool boolean(const char* k, bool def) const {
    if (!has(k)) return def;
    if (!j_[k].is_boolean()) bad(k, "must be true or false, got " + describe(j_[k]));
    return j_[k].get<bool>();
  }
  std::string str(const char* k, const std::string& def) const {
    if (!has(k)) return def;
    if (!j_[k].is_string()) bad(k, "must be a string, got " + describe(j_[k]));
    return j_[k].get<std::string>();
  }
  // A token id: an integer, null (absent: -1), or a list of which the first counts.
  int64_t token_id(const char* k) const {
    if (!has(k)) return -1;
    const json& v = j_[k];
    if (!v.is_array()) return i64(k);
    if (v.empty()) return -1;
    if (!v[0].is_number_integer()) bad(k, "must hold integers, got " + describe(v[0]));
    if (v[0].is_number_unsigned() && v[0].get<uint64_t>() > uint64_t(INT64_MAX))
      bad(k, "is too large: " + v[0].dump());
    return v[0].get<int64_t>();
  }

 private:
  static std::string describe(const json& v) {
    std::string s = v.dump();
    if (s.size() > 40) s = s.substr(0, 40) + "...";
    return std::string(v.type_name()) + " " + s;
  }
  const json& j_;
  const std::string& where_;
  std::string prefix_;
};

// default_original: what yarn's original_max_position_embeddings is when
// absent (transformers 5: the top-level field of that name, else
// max_position_embeddings); max_pos: max_position_embeddings.
RopeScaling parse_rope(const json& r, const std::string& field, const std::string& where,
                       int64_t default_original, int64_t max_pos) {
  if (!r.is_object()) FAIL(where, ": field '", field, "' must be an object or null, got ", r.type_name());
  const Fields f(r, where, field + ".");
  RopeScaling rs;
  // Newer transformers spell it rope_type; older configs used type.
  rs.type = f.has("rope_type") ? f.str("rope_type", "") : f.str("type", "default");
  if (f.has("partial_rotary_factor") && f.f64("partial_rotary_factor") != 1.0)
    f.bad("partial_rotary_factor", "is not 1; partial rotary embeddings are not supported");
  if (rs.type == "default") return rs;
  if (rs.type == "dynamic")
    FAIL(where, ": field '", field, "' has rope type 'dynamic' (dynamic NTK), which rescales by the ",
         "length of each batch and is not supported: use 'yarn', 'linear' or 'llama3'");
  if (rs.type != "linear" && rs.type != "llama3" && rs.type != "yarn")
    FAIL(where, ": field '", field, "' has unsupported rope type '", rs.type,
         "' (supported: default, linear, llama3, yarn)");
  if (rs.type == "yarn") {  // transformers 5's _compute_yarn_parameters
    rs.original_max_position_embeddings = f.i64("original_max_position_embeddings", default_original);
    rs.factor =
        f.has("factor") ? f.f64("factor") : double(max_pos) / double(rs.original_max_position_embeddings);
    rs.attention_factor = f.f64("attention_factor", 0);
    if (f.has("attention_factor") && !(rs.attention_factor > 0))
      f.bad("attention_factor", "must be positive (it scales cos and sin)");
    rs.mscale = f.f64("mscale", 0), rs.mscale_all_dim = f.f64("mscale_all_dim", 0);
    // `or 32` / `or 1` in transformers: 0 means the default too
    rs.beta_fast = f.f64("beta_fast", 0) != 0 ? f.f64("beta_fast") : 32.0;
    rs.beta_slow = f.f64("beta_slow", 0) != 0 ? f.f64("beta_slow") : 1.0;
    rs.truncate = f.boolean("truncate", true);
    return rs;
  }
  rs.factor = f.f64("factor");
  if (rs.type == "llama3") {
    rs.low_freq_factor = f.f64("low_freq_factor");
    rs.high_freq_factor = f.f64("high_freq_factor");
    rs.original_max_position_embeddings = f.i64("original_max_position_embeddings");
  }
  return rs;
}

// Features of other Llama-like models that the engine does not implement;
// accepting them would silently train a different model.
void reject_unsupported(const Fields& f, const std::string& where) {
  const std::string model_type = f.str("model_type", "llama");
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2" && model_type != "qwen3")
    FAIL(where, ": model_type '", model_type, "' is not supported (llama, mistral, qwen2, qwen3)");
  const std::string act = f.str("hidden_act", "silu");
  if (act != "silu") f.bad("hidden_act", "is '" + act + "'; only 'silu' is supported");
  if (f.has("partial_rotary_factor") && f.f64("partial_rotary_factor") != 1.0)
    f.bad("partial_rotary_factor", "is not 1; partial rotary embeddings are not supported");
}

// Sizes past these are a corrupt or hostile file, not a model. Refusing them
// keeps every product of them (weights, activations, plans) far from int64
// overflow. Llama 3.1 405B: vocab 128256, hidden 16384, intermediate 53248,
// 126 layers, 128 heads of 128, 4e11 parameters.
constexpr int64_t kMaxVocab = INT32_MAX;          // token ids are int32
constexpr int64_t kMaxWidth = int64_t(1) << 20;   // hidden, intermediate, head_dim, q and kv widths
constexpr int64_t kMaxLayers = int64_t(1) << 14;  // also the most heads
constexpr int64_t kMaxPositions = INT32_MAX;      // positions are int32
constexpr int64_t kMaxParams = int64_t(1) << 42;  // 4.4e12 parameters: 16 TiB of fp32 weights

// Weights of the model (all sizes already within the limits above: no overflow).
int64_t param_count(const LlamaConfig& c) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, Cq = c.q_dim(), Ckv = c.kv_dim();
  const int64_t per_layer = 2 * C * Cq + 2 * C * Ckv + 3 * C * F + 2 * C + (c.qkv_bias() ? Cq + 2 * Ckv : 0) +
                            (c.o_bias() ? C : 0) + (c.mlp_bias ? 2 * F + C : 0) +
                            (c.qk_norm() ? 2 * c.head_dim : 0);
  return c.vocab_size * C * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * per_layer + C;
}

void validate_impl(const LlamaConfig& c, const std::string& where) {
  const std::pair<const char*, int64_t> sizes[] = {{"vocab_size", c.vocab_size},
                                                   {"hidden_size", c.hidden_size},
                                                   {"intermediate_size", c.intermediate_size},
                                                   {"num_hidden_layers", c.num_hidden_layers},
                                                   {"num_attention_heads", c.num_attention_heads},
                                                   {"num_key_value_heads", c.num_key_value_heads},
                                                   {"head_dim", c.head_dim},
                                                   {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [name, v] : sizes)
    if (v <= 0) FAIL(where, ": ", name, " must be positive, got ", v);
  const std::pair<const char*, int64_t> limits[] = {{"vocab_size", kMaxVocab},
                                                    {"hidden_size", kMaxWidth},
                                                    {"intermediate_size", kMaxWidth},
                                                    {"num_hidden_layers", kMaxLayers},
                                                    {"num_attention_heads", kMaxLayers},
                                                    {"num_key_value_heads", kMaxLayers},
                                                    {"head_dim", kMaxWidth},
                                                    {"max_position_embeddings", kMaxPositions}};
  for (size_t i = 0; i < std::size(limits); i++)
    if (sizes[i].second > limits[i].second)
      FAIL(where, ": ", limits[i].first, " ", sizes[i].second, " is absurd (limit ", limits[i].second, ")");
  if (c.q_dim() > kMaxWidth)
    FAIL(where, ": num_attention_heads * head_dim = ", c.q_dim(), " is absurd (limit ", kMaxWidth, ")");
  if (param_count(c) > kMaxParams)
    FAIL(where, ": the model would have ", param_count(c), " parameters, more than the limit of ",
         kMaxParams);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    FAIL(where, ": num_attention_heads (", c.num_attention_heads,
         ") must be a multiple of num_key_value_heads (", c.num_key_value_heads, ")");
  if (c.head_dim % 2 != 0) FAIL(where, ": head_dim must be even for RoPE, got ", c.head_dim);
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps))
    FAIL(where, ": rms_norm_eps must be positive and finite, got ", c.rms_norm_eps);
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    FAIL(where, ": rope_theta must be positive and finite, got ", c.rope_theta);
  if (!(c.initializer_range >= 0) || !std::isfinite(c.initializer_range))
    FAIL(where, ": initializer_range must be >= 0 and finite, got ", c.initializer_range);
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2" &&
      c.model_type != "qwen3")
    FAIL(where, ": model_type '", c.model_type, "' is not supported (llama, mistral, qwen2, qwen3)");
  if (c.sliding_window < 0) FAIL(where, ": sliding_window must be positive or null, got ", c.sliding_window);
  if (c.max_window_layers < 0) FAIL(where, ": max_window_layers must be >= 0, got ", c.max_window_layers);
  if (!c.layer_types.empty()) {
    if (int64_t(c.layer_types.size()) != c.num_hidden_layers)
      FAIL(where, ": layer_types has ", c.layer_types.size(), " entries for ", c.num_hidden_layers,
           " layers");
    for (size_t l = 0; l < c.layer_types.size(); l++) {
      if (c.layer_types[l] != "full_attention" && c.layer_types[l] != "sliding_attention")
        FAIL(where, ": layer_types[", l, "] is '", c.layer_types[l],
             "' (supported: full_attention, sliding_attention)");
      if (c.layer_types[l] == "sliding_attention" && (c.sliding_window == 0 || !c.use_sliding_window))
        FAIL(where, ": layer_types[", l, "] is sliding_attention but sliding_window is null ",
             "(use_sliding_window false)");
    }
  }
  const RopeScaling& r = c.rope_scaling;
  if (r.type != "default" && r.type != "linear" && r.type != "llama3" && r.type != "yarn")
    FAIL(where, ": unsupported rope type '", r.type, "'");
  if (r.type == "yarn") {
    if (r.original_max_position_embeddings <= 0 || r.original_max_position_embeddings > kMaxPositions)
      FAIL(where, ": rope_scaling.original_max_position_embeddings must be in [1, ", kMaxPositions, "], got ",
           r.original_max_position_embeddings);
    for (const auto& [name, v] : {std::pair<const char*, double>{"attention_factor", r.attention_factor},
                                  {"mscale", r.mscale},
                                  {"mscale_all_dim", r.mscale_all_dim},
                                  {"beta_fast", r.beta_fast},
                                  {"beta_slow", r.beta_slow}})
      if (!(v >= 0) || !std::isfinite(v))
        FAIL(where, ": rope_scaling.", name, " must be >= 0 and finite, got ", v);
    if (r.beta_fast < r.beta_slow)
      FAIL(where, ": rope_scaling needs beta_fast >= beta_slow, got ", r.beta_fast, " and ", r.beta_slow);
  }
  if (r.type != "default" && (!(r.factor > 0) || !std::isfinite(r.factor)))
    FAIL(where, ": rope_scaling.factor must be positive and finite, got ", r.factor);
  if (r.type == "llama3") {
    if (!(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) ||
        !std::isfinite(r.high_freq_factor))
      FAIL(where, ": rope_scaling needs 0 < low_freq_factor < high_freq_factor, got ", r.low_freq_factor,
           " and ", r.high_freq_factor);
    if (r.original_max_position_embeddings <= 0 || r.original_max_position_embeddings > kMaxPositions)
      FAIL(where, ": rope_scaling.original_max_position_embeddings must be in [1, ", kMaxPositions, "], got ",
           r.original_max_position_embeddings);
  }
}

}  // namespace

void LlamaConfig::validate() const { validate_impl(*this, "LlamaConfig"); }

LlamaConfig llama_config_from_json(const std::string& text, const std::string& source) {
  const std::string where = "config " + source;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    FAIL(where, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) FAIL(where, ": not a JSON object (got ", j.type_name(), ")");
  const Fields f(j, where);
  reject_unsupported(f, where);

  LlamaConfig c;
  c.model_type = f.str("model_type", "llama");
  const bool qwen = c.model_type == "qwen2" || c.model_type == "qwen3";
  c.vocab_size = f.i64("vocab_size");
  c.hidden_size = f.i64("hidden_size");
  c.intermediate_size = f.i64("intermediate_size");
  c.num_hidden_layers = f.i64("num_hidden_layers");
  c.num_attention_heads = f.i64("num_attention_heads");
  c.num_key_value_heads = f.i64("num_key_value_heads", c.num_attention_heads);
  if (f.has("head_dim")) {
    c.head_dim = f.i64("head_dim");
  } else if (c.model_type == "qwen3") {
    c.head_dim = 128;  // Qwen3Config's default, not hidden_size / heads
  } else {
    if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0)
      FAIL(where, ": hidden_size (", c.hidden_size, ") is not a multiple of num_attention_heads (",
           c.num_attention_heads, ") and head_dim is not given");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  // each family's default in transformers
  const int64_t max_pos = c.model_type == "mistral" ? 4096 * 32 : qwen ? 32768 : c.max_position_embeddings;
  c.max_position_embeddings = f.i64("max_position_embeddings", max_pos);
  c.rms_norm_eps = f.f64("rms_norm_eps", c.rms_norm_eps);
  c.rope_theta = f.f64("rope_theta", c.rope_theta);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", c.tie_word_embeddings);
  c.initializer_range = f.f64("initializer_range", c.initializer_range);
  c.torch_dtype = f.str("torch_dtype", f.str("dtype", c.torch_dtype));  // transformers v5 says "dtype"
  c.bos_token_id = f.token_id("bos_token_id");
  c.eos_token_id = f.token_id("eos_token_id");
  // What each family's modeling code reads (the others ignore these fields, as transformers does).
  if (c.model_type == "llama" || c.model_type == "qwen3")
    c.attention_bias = f.boolean("attention_bias", false);
  if (c.model_type == "llama") c.mlp_bias = f.boolean("mlp_bias", false);
  // sliding_window: absent is the config class's default (4096), null is none
  const bool window_null = j.contains("sliding_window") && j["sliding_window"].is_null();
  if (c.model_type == "mistral" || qwen) c.sliding_window = window_null ? 0 : f.i64("sliding_window", 4096);
  if (c.model_type == "mistral" && c.sliding_window == 0 && !window_null)
    f.bad("sliding_window", "must be positive or null, got 0");
  if (qwen) {
    c.use_sliding_window = f.boolean("use_sliding_window", false);
    c.max_window_layers = f.i64("max_window_layers", c.max_window_layers);
    if (f.has("layer_types")) {
      if (!j["layer_types"].is_array()) f.bad("layer_types", "must be a list of strings");
      for (const json& t : j["layer_types"]) {
        if (!t.is_string()) f.bad("layer_types", "must be a list of strings");
        c.layer_types.push_back(t.get<std::string>());
      }
    }
  }

  // transformers v5 moved rope settings (theta included) into rope_parameters; prefer it when present.
  const int64_t original = f.i64("original_max_position_embeddings", c.max_position_embeddings);
  if (f.has("rope_parameters")) {
    c.rope_scaling =
        parse_rope(j["rope_parameters"], "rope_parameters", where, original, c.max_position_embeddings);
    c.rope_theta = Fields(j["rope_parameters"], where, "rope_parameters.").f64("rope_theta", c.rope_theta);
  } else if (f.has("rope_scaling")) {
    c.rope_scaling =
        parse_rope(j["rope_scaling"], "rope_scaling", where, original, c.max_position_embeddings);
  }
  validate_impl(c, where);
  return c;
}

LlamaConfig load_llama_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) FAIL("config ", path, ": cannot open (", std::strerror(errno), ")");
  std::stringstream ss;
  ss << in.rdbuf();
  return llama_config_from_json(ss.str(), path);
}

std::string llama_config_to_json(const LlamaConfig& c) {
  ordered_json rope = nullptr;  // HF writes null for plain RoPE
  const RopeScaling& r = c.rope_scaling;
  if (r.type == "linear") rope = {{"rope_type", "linear"}, {"factor", r.factor}};
  if (r.type == "llama3")
    rope = {{"rope_type", "llama3"},
            {"factor", r.factor},
            {"low_freq_factor", r.low_freq_factor},
            {"high_freq_factor", r.high_freq_factor},
            {"original_max_position_embeddings", r.original_max_position_embeddings}};
  if (r.type == "yarn") {
    rope = {{"rope_type", "yarn"},
            {"factor", r.factor},
            {"original_max_position_embeddings", r.original_max_position_embeddings},
            {"beta_fast", r.beta_fast},
            {"beta_slow", r.beta_slow}};
    if (r.attention_factor > 0) rope["attention_factor"] = r.attention_factor;
    if (r.mscale > 0) rope["mscale"] = r.mscale;
    if (r.mscale_all_dim > 0) rope["mscale_all_dim"] = r.mscale_all_dim;
    if (!r.truncate) rope["truncate"] = false;
  }
  auto token = [](int64_t id) { return id < 0 ? ordered_json(nullptr) : ordered_json(id); };
  auto window = [](int64_t w) { return w > 0 ? ordered_json(w) : ordered_json(nullptr); };
  const char* arch = c.model_type == "mistral" ? "MistralForCausalLM"
                     : c.model_type == "qwen2" ? "Qwen2ForCausalLM"
                     : c.model_type == "qwen3" ? "Qwen3ForCausalLM"
                                               : "LlamaForCausalLM";
  ordered_json j = {{"architectures", ordered_json::array({arch})},
                    {"model_type", c.model_type},
                    {"vocab_size", c.vocab_size},
                    {"hidden_size", c.hidden_size},
                    {"intermediate_size", c.intermediate_size},
                    {"num_hidden_layers", c.num_hidden_layers},
                    {"num_attention_heads", c.num_attention_heads},
                    {"num_key_value_heads", c.num_key_value_heads},
                    {"head_dim", c.head_dim},
                    {"max_position_embeddings", c.max_position_embeddings},
                    {"rms_norm_eps", c.rms_norm_eps},
                    {"rope_theta", c.rope_theta},
                    {"rope_scaling", rope},
                    {"hidden_act", "silu"}};
  // each family's own fields
  if (c.model_type == "llama" || c.model_type == "qwen3") j["attention_bias"] = c.attention_bias;
  if (c.model_type == "llama") j["mlp_bias"] = c.mlp_bias;
  if (c.model_type == "mistral") j["sliding_window"] = window(c.sliding_window);
  if (c.model_type == "qwen2" || c.model_type == "qwen3") {
    j["use_sliding_window"] = c.use_sliding_window;
    j["sliding_window"] = window(c.sliding_window);
    j["max_window_layers"] = c.max_window_layers;
    if (!c.layer_types.empty()) j["layer_types"] = c.layer_types;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["initializer_range"] = c.initializer_range;
  j["torch_dtype"] = c.torch_dtype;
  j["bos_token_id"] = token(c.bos_token_id);
  j["eos_token_id"] = token(c.eos_token_id);
  return j.dump(2) + "\n";
}

int64_t LlamaConfig::window(int64_t layer) const {
  if (model_type == "mistral") return sliding_window;
  if (model_type != "qwen2" && model_type != "qwen3") return 0;
  if (!use_sliding_window || sliding_window == 0) return 0;  // transformers sets it to None
  if (!layer_types.empty())
    return layer >= 0 && size_t(layer) < layer_types.size() &&
                   layer_types[size_t(layer)] == "sliding_attention"
               ? sliding_window
               : 0;
  return layer >= max_window_layers ? sliding_window : 0;
}

bool LlamaConfig::any_window() const {
  for (int64_t l = 0; l < num_hidden_layers; l++)
    if (window(l) > 0) return true;
  return false;
}

std::string merge_config_json(const std::string& config_json, const std::string& override_json,
                              const std::string& source) {
  json base, over;
  try {
    base = json::parse(config_json);
  } catch (const json::exception& e) {
    FAIL("config ", source, ": not valid JSON (", e.what(), ")");
  }
  try {
    over = json::parse(override_json);
  } catch (const json::exception& e) {
    FAIL("model.override: not valid JSON (", e.what(), ")");
  }
  if (!base.is_object()) FAIL("config ", source, ": not a JSON object (got ", base.type_name(), ")");
  if (!over.is_object())
    FAIL("model.override: must be a mapping of HF config fields, got ", over.type_name());
  // The rope settings live in one of two layouts; an override of either replaces both, keeping the
  // file's rope_theta unless the override sets it.
  const bool new_rope = over.contains("rope_scaling") || over.contains("rope_parameters");
  if ((new_rope || over.contains("rope_theta")) && base.contains("rope_parameters") &&
      base["rope_parameters"].is_object()) {
    const json& rp = base["rope_parameters"];
    if (rp.contains("rope_theta") && !base.contains("rope_theta")) base["rope_theta"] = rp["rope_theta"];
    if (!new_rope) {  // keep the file's scaling, now in the 4.x layout
      json scaling = rp;
      scaling.erase("rope_theta");
      base["rope_scaling"] = scaling;
    }
    base.erase("rope_parameters");
  }
  if (new_rope) base.erase("rope_scaling");
  if (over.contains("rope_parameters") && over["rope_parameters"].is_object() &&
      over["rope_parameters"].contains("rope_theta"))
    base.erase("rope_theta");
  for (auto it = over.begin(); it != over.end(); ++it) base[it.key()] = it.value();
  return base.dump();
}

LlamaConfig load_llama_config(const std::string& path, const std::string& override_json) {
  if (override_json.empty()) return load_llama_config(path);
  std::ifstream in(path);
  if (!in) FAIL("config ", path, ": cannot open (", std::strerror(errno), ")");
  std::stringstream ss;
  ss << in.rdbuf();
  return llama_config_from_json(merge_config_json(ss.str(), override_json, path),
                                path + " with model.override");
}

}  // namespace longctx
