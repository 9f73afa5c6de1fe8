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

RopeScaling parse_rope(const json& r, const std::string& field, const std::string& where) {
  if (!r.is_object()) FAIL(where, ": field '", field, "' must be an object or null, got ", r.type_name());
  const Fields f(r, where, field + ".");
  RopeScaling rs;
  // Newer transformers spell it rope_type; older configs used type.
  rs.type = f.has("rope_type") ? f.str("rope_type", "") : f.str("type", "default");
  if (rs.type == "default") return rs;
  if (rs.type != "linear" && rs.type != "llama3")
    FAIL(where, ": field '", field, "' has unsupported rope type '", rs.type,
         "' (supported: default, linear, llama3)");
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
  if (model_type != "llama") FAIL(where, ": model_type '", model_type, "' is not supported (only 'llama')");
  const std::string act = f.str("hidden_act", "silu");
  if (act != "silu") f.bad("hidden_act", "is '" + act + "'; only 'silu' is supported");
  if (f.boolean("attention_bias", false))
    f.bad("attention_bias", "is true; attention biases are not supported");
  if (f.boolean("mlp_bias", false)) f.bad("mlp_bias", "is true; MLP biases are not supported");
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
  const int64_t per_layer = 2 * C * Cq + 2 * C * Ckv + 3 * C * F + 2 * C;
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
  const RopeScaling& r = c.rope_scaling;
  if (r.type != "default" && r.type != "linear" && r.type != "llama3")
    FAIL(where, ": unsupported rope type '", r.type, "'");
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
  c.vocab_size = f.i64("vocab_size");
  c.hidden_size = f.i64("hidden_size");
  c.intermediate_size = f.i64("intermediate_size");
  c.num_hidden_layers = f.i64("num_hidden_layers");
  c.num_attention_heads = f.i64("num_attention_heads");
  c.num_key_value_heads = f.i64("num_key_value_heads", c.num_attention_heads);
  if (f.has("head_dim")) {
    c.head_dim = f.i64("head_dim");
  } else {
    if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0)
      FAIL(where, ": hidden_size (", c.hidden_size, ") is not a multiple of num_attention_heads (",
           c.num_attention_heads, ") and head_dim is not given");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.max_position_embeddings = f.i64("max_position_embeddings", c.max_position_embeddings);
  c.rms_norm_eps = f.f64("rms_norm_eps", c.rms_norm_eps);
  c.rope_theta = f.f64("rope_theta", c.rope_theta);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", c.tie_word_embeddings);
  c.initializer_range = f.f64("initializer_range", c.initializer_range);
  c.torch_dtype = f.str("torch_dtype", f.str("dtype", c.torch_dtype));  // transformers v5 says "dtype"
  c.bos_token_id = f.token_id("bos_token_id");
  c.eos_token_id = f.token_id("eos_token_id");

  // transformers v5 moved rope settings (theta included) into rope_parameters; prefer it when present.
  if (f.has("rope_parameters")) {
    c.rope_scaling = parse_rope(j["rope_parameters"], "rope_parameters", where);
    c.rope_theta = Fields(j["rope_parameters"], where, "rope_parameters.").f64("rope_theta", c.rope_theta);
  } else if (f.has("rope_scaling")) {
    c.rope_scaling = parse_rope(j["rope_scaling"], "rope_scaling", where);
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
  auto token = [](int64_t id) { return id < 0 ? ordered_json(nullptr) : ordered_json(id); };
  const ordered_json j = {{"architectures", ordered_json::array({"LlamaForCausalLM"})},
                          {"model_type", "llama"},
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
                          {"hidden_act", "silu"},
                          {"attention_bias", false},
                          {"mlp_bias", false},
                          {"tie_word_embeddings", c.tie_word_embeddings},
                          {"initializer_range", c.initializer_range},
                          {"torch_dtype", c.torch_dtype},
                          {"bos_token_id", token(c.bos_token_id)},
                          {"eos_token_id", token(c.eos_token_id)}};
  return j.dump(2) + "\n";
}

}  // namespace longctx
