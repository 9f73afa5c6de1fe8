// HF config.json parsing: real-world spellings, defaults, the JSON round
// trip, and one test per rejection (each error names the file and the field).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "harness.h"
#include "model/config.h"

namespace fs = std::filesystem;
using namespace longctx;
using longctx::test::expect_error;
using json = nlohmann::json;

namespace {

// Llama-3.1-8B's config.json, abridged to the fields that matter.
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256
})";

// The smallest config: only the required fields.
json minimal() {
  return {{"vocab_size", 100},
          {"hidden_size", 64},
          {"intermediate_size", 160},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4}};
}

LlamaConfig parse(const json& j) { return llama_config_from_json(j.dump(), "test/config.json"); }

void expect_parse_error(const json& j, const std::vector<std::string>& needles) {
  std::vector<std::string> all = needles;
  all.push_back("test/config.json");
  expect_error([&] { parse(j); }, all);
}

TEST(ConfigTest, ParsesLlama31) {
  const LlamaConfig c = llama_config_from_json(kLlama31, "llama31.json");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.q_dim(), 4096);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_id, 128001);  // first of the list
}

TEST(ConfigTest, Defaults) {
  const LlamaConfig c = parse(minimal());
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.eos_token_id, -1);
  EXPECT_EQ(c.max_position_embeddings, 2048);
}

TEST(ConfigTest, ExplicitOrNullHeadDim) {
  json j = minimal();
  j["head_dim"] = 32;  // differs from hidden_size / heads, as in some models
  const LlamaConfig c = parse(j);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.q_dim(), 128);
  j["head_dim"] = nullptr;
  EXPECT_EQ(parse(j).head_dim, 16);
}

TEST(ConfigTest, TokenIdsNullOrList) {
  json j = minimal();
  j["bos_token_id"] = nullptr;
  j["eos_token_id"] = {2, 3};
  LlamaConfig c = parse(j);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_EQ(c.eos_token_id, 2);
  j["eos_token_id"] = 7;
  EXPECT_EQ(parse(j).eos_token_id, 7);
}

TEST(ConfigTest, RopeSpellings) {
  json j = minimal();
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(j).rope_scaling.type, "default");
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // older key name
  LlamaConfig c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse(j).rope_scaling.type, "default");

  // transformers v5: rope_parameters carries the theta too.
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                          {"factor", 32.0},          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  c = parse(j);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
}

TEST(ConfigTest, JsonRoundTrip) {
  LlamaConfig a = llama_config_from_json(kLlama31, "llama31.json");
  a.head_dim = 96;
  a.tie_word_embeddings = true;
  a.rms_norm_eps = 1.2345678901234567e-6;
  a.initializer_range = 0.0123;
  const std::string text = llama_config_to_json(a);
  const json j = json::parse(text);
  EXPECT_EQ(j["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "llama3");
  const LlamaConfig b = llama_config_from_json(text, "roundtrip");
  EXPECT_EQ(llama_config_to_json(b), text);
  EXPECT_EQ(b.head_dim, 96);
  EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
  EXPECT_EQ(b.initializer_range, a.initializer_range);
  EXPECT_EQ(b.eos_token_id, 128001);

  LlamaConfig d = parse(minimal());  // default rope -> null; absent token ids -> null
  const json jd = json::parse(llama_config_to_json(d));
  EXPECT_TRUE(jd["rope_scaling"].is_null());
  EXPECT_TRUE(jd["bos_token_id"].is_null());
  d.rope_scaling.type = "linear", d.rope_scaling.factor = 4.0;
  const LlamaConfig e = llama_config_from_json(llama_config_to_json(d), "linear");
  EXPECT_EQ(e.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(e.rope_scaling.factor, 4.0);
  EXPECT_EQ(e.bos_token_id, -1);
}

TEST(ConfigTest, LoadFromFile) {
  char tmpl[] = "/tmp/longctx_cfg_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::ofstream(dir + "/config.json") << kLlama31;
  EXPECT_EQ(load_llama_config(dir + "/config.json").num_key_value_heads, 8);
  expect_error([&] { load_llama_config(dir + "/absent.json"); }, {"absent.json", "cannot open"});
  std::ofstream(dir + "/bad.json") << "{\"vocab_size\": 10,";
  expect_error([&] { load_llama_config(dir + "/bad.json"); }, {"bad.json", "not valid JSON"});
  fs::remove_all(dir);
}

// ------------------------------------------------------------ rejections

TEST(ConfigTest, ErrorNotJsonOrNotObject) {
  expect_error([] { llama_config_from_json("{", "x.json"); }, {"x.json", "not valid JSON"});
  expect_error([] { llama_config_from_json("[1]", "x.json"); }, {"x.json", "not a JSON object"});
}

TEST(ConfigTest, ErrorMissingRequiredField) {
  for (const char* field :
       {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
    json j = minimal();
    j.erase(field);
    expect_parse_error(j, {field, "required"});
    j[field] = nullptr;
    expect_parse_error(j, {field, "required"});
  }
}

TEST(ConfigTest, ErrorWrongJsonTypes) {
  const std::pair<const char*, json> cases[] = {
      {"hidden_size", "abc"},          {"num_hidden_layers", 2.5}, {"num_key_value_heads", true},
      {"head_dim", json::array({64})}, {"rms_norm_eps", "1e-5"},   {"rope_theta", json::object()},
      {"tie_word_embeddings", 1},      {"torch_dtype", 16},        {"eos_token_id", "</s>"},
      {"rope_scaling", "llama3"}};
  for (const auto& [field, value] : cases) {
    json j = minimal();
    j[field] = value;
    expect_parse_error(j, {std::string("'") + field + "'", "must be"});
  }
  json j = minimal();
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", "2"}};
  expect_parse_error(j, {"rope_scaling.factor", "must be a number"});
}

TEST(ConfigTest, ErrorUnsupportedModel) {
  json j = minimal();
  j["model_type"] = "mistral";
  expect_parse_error(j, {"model_type 'mistral'", "not supported"});
  j["model_type"] = "llama";
  EXPECT_NO_THROW(parse(j));
  j["attention_bias"] = true;
  expect_parse_error(j, {"attention_bias", "not supported"});
  j["attention_bias"] = false;
  j["mlp_bias"] = true;
  expect_parse_error(j, {"mlp_bias", "not supported"});
  j["mlp_bias"] = false;
  j["hidden_act"] = "gelu";
  expect_parse_error(j, {"hidden_act", "'gelu'", "silu"});
}

TEST(ConfigTest, ErrorRopeType) {
  json j = minimal();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_parse_error(j, {"rope_scaling", "unsupported rope type 'yarn'"});
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"type", "dynamic"}, {"factor", 4.0}};
  expect_parse_error(j, {"rope_parameters", "'dynamic'"});
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  expect_parse_error(j, {"rope_parameters.low_freq_factor", "required"});
}

TEST(ConfigTest, ErrorValidation) {
  json j = minimal();
  j["num_key_value_heads"] = 3;
  expect_parse_error(j, {"num_attention_heads (4)", "num_key_value_heads (3)"});
  j = minimal();
  j["head_dim"] = 15;
  expect_parse_error(j, {"head_dim", "even"});
  j = minimal();
  j["hidden_size"] = 66;  // not divisible by 4 heads and no head_dim given
  expect_parse_error(j, {"hidden_size (66)", "head_dim"});
  j = minimal();
  j["intermediate_size"] = 0;
  expect_parse_error(j, {"intermediate_size", "positive"});
  j = minimal();
  j["num_attention_heads"] = 0;
  expect_parse_error(j, {"num_attention_heads"});
  j = minimal();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 0.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  expect_parse_error(j, {"rope_scaling.factor", "positive"});
  j["rope_scaling"]["factor"] = 8.0;
  j["rope_scaling"]["high_freq_factor"] = 1.0;
  expect_parse_error(j, {"low_freq_factor < high_freq_factor"});
}

TEST(ConfigTest, ValidateDirectly) {
  LlamaConfig c = parse(minimal());
  EXPECT_NO_THROW(c.validate());
  c.num_key_value_heads = 3;
  expect_error([&] { c.validate(); }, {"LlamaConfig", "num_key_value_heads"});
  c.num_key_value_heads = 2;
  c.head_dim = 7;
  expect_error([&] { c.validate(); }, {"head_dim", "even"});
}

}  // namespace
