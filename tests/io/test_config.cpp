// HF config.json parsing: real-world spellings, defaults, the JSON round
// trip, and one test per rejection (each error names the file and the field).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "harness.h"
#include "model/config.h"
#include "model/lora.h"

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
  j["model_type"] = "gemma";
  expect_parse_error(j, {"model_type 'gemma'", "not supported"});
  j["model_type"] = "llama";
  EXPECT_NO_THROW(parse(j));
  j["hidden_act"] = "gelu";
  expect_parse_error(j, {"hidden_act", "'gelu'", "silu"});
  j["hidden_act"] = "silu";
  j["partial_rotary_factor"] = 0.5;
  expect_parse_error(j, {"partial_rotary_factor", "not supported"});
}

TEST(ConfigTest, ErrorRopeType) {
  json j = minimal();
  j["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 4.0}};
  expect_parse_error(j, {"rope_scaling", "unsupported rope type 'longrope'"});
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

// ---- limits: a size no model has is refused before anything is sized by it

TEST(ConfigTest, AbsurdSizesAreRefused) {
  const std::pair<const char*, int64_t> cases[] = {{"vocab_size", int64_t(1) << 40},
                                                   {"hidden_size", int64_t(1) << 30},
                                                   {"intermediate_size", int64_t(1) << 30},
                                                   {"num_hidden_layers", int64_t(1) << 20},
                                                   {"max_position_embeddings", int64_t(1) << 40}};
  for (const auto& [field, v] : cases) {
    json j = minimal();
    j[field] = v;
    expect_parse_error(j, {field, std::to_string(v), "absurd"});
  }
  json j = minimal();
  j["head_dim"] = int64_t(1) << 30;
  expect_parse_error(j, {"head_dim", "absurd"});
  j = minimal();  // each size fine, their product not: 2^20 * 2^20 * 2^14 layers
  j["hidden_size"] = 1 << 20, j["intermediate_size"] = 1 << 20, j["num_hidden_layers"] = 1 << 14;
  j["num_attention_heads"] = 1 << 10;
  expect_parse_error(j, {"parameters", "limit"});
  j = minimal();
  j["num_attention_heads"] = 1 << 14, j["hidden_size"] = 1 << 20, j["head_dim"] = 1 << 10;
  expect_parse_error(j, {"num_attention_heads * head_dim", "absurd"});
  // an integer past int64 is not wrapped around into a negative one
  const std::string text = R"({"vocab_size": 18446744073709551615, "hidden_size": 64,
    "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4})";
  expect_error([&] { llama_config_from_json(text, "test/config.json"); },
               {"test/config.json", "vocab_size", "too large", "18446744073709551615"});
  // a real 405B-sized config still passes
  j = minimal();
  j["vocab_size"] = 128256, j["hidden_size"] = 16384, j["intermediate_size"] = 53248;
  j["num_hidden_layers"] = 126, j["num_attention_heads"] = 128, j["num_key_value_heads"] = 8;
  EXPECT_NO_THROW(parse(j));
}

TEST(ConfigTest, NonFiniteNumbersAreRefused) {
  // JSON cannot spell inf (1e999 is a parse error); validate() guards configs built in code
  const std::string text = R"({"vocab_size": 100, "hidden_size": 64, "intermediate_size": 160,
    "num_hidden_layers": 2, "num_attention_heads": 4, "rope_theta": 1e999})";
  expect_error([&] { llama_config_from_json(text, "test/config.json"); },
               {"test/config.json", "not valid JSON"});
  for (const char* field : {"rms_norm_eps", "rope_theta", "initializer_range"}) {
    LlamaConfig c = parse(minimal());
    double& v = std::string(field) == "rms_norm_eps" ? c.rms_norm_eps
                : std::string(field) == "rope_theta" ? c.rope_theta
                                                     : c.initializer_range;
    v = std::numeric_limits<double>::infinity();
    expect_error([&] { c.validate(); }, {field, "finite"});
    v = std::nan("");
    expect_error([&] { c.validate(); }, {field});
  }
  json j = minimal();
  j["initializer_range"] = -0.5;
  expect_parse_error(j, {"initializer_range", ">= 0"});
}

// ---- LoRA adapter_config.json (load_lora_config): every field type-checked

class LoraConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/longctx_lora_cfg_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  static json good() {
    return {{"peft_type", "LORA"},
            {"r", 8},
            {"lora_alpha", 16},
            {"target_modules", {"q_proj", "v_proj"}},
            {"fan_in_fan_out", false}};
  }
  void write(const std::string& text) { std::ofstream(dir_ + "/adapter_config.json") << text; }
  void expect_refused(const json& j, std::vector<std::string> needles) {
    write(j.dump());
    needles.push_back("adapter_config.json");
    expect_error([&] { load_lora_config(dir_); }, needles);
  }
  std::string dir_;
};

TEST_F(LoraConfigTest, ReadsPeftFields) {
  write(good().dump());
  const LoraConfig lc = load_lora_config(dir_);
  EXPECT_EQ(lc.rank, 8);
  EXPECT_EQ(lc.alpha, 16.0);
  EXPECT_EQ(lc.targets, (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST_F(LoraConfigTest, WrongTypesAreOneLineErrorsNamingTheField) {
  // each of these used to escape as a raw nlohmann exception (type_error / out_of_range)
  write("[1, 2]");
  expect_error([&] { load_lora_config(dir_); }, {"adapter_config.json", "not a JSON object"});
  json j = good();
  j["peft_type"] = 3;
  expect_refused(j, {"peft_type 3", "not supported"});
  j = good();
  j.erase("r");
  expect_refused(j, {"'r'", "required"});
  j = good();
  j["r"] = "8";
  expect_refused(j, {"'r'", "integer", "string"});
  j = good();
  j["r"] = 2.5;
  expect_refused(j, {"'r'", "integer"});
  j = good();
  j["lora_alpha"] = "big";
  expect_refused(j, {"'lora_alpha'", "number"});
  j = good();
  j["target_modules"] = "all-linear";
  expect_refused(j, {"'target_modules'", "list", "all-linear"});
  j = good();
  j["target_modules"] = {"q_proj", 7};
  expect_refused(j, {"'target_modules'", "strings"});
  j = good();
  j["fan_in_fan_out"] = "no";
  expect_refused(j, {"'fan_in_fan_out'", "true or false"});
  j = good();
  j["target_modules"] = {"qkv"};
  expect_refused(j, {"unknown target module 'qkv'"});
}

TEST_F(LoraConfigTest, AbsurdRankAndUnsupportedMathAreRefused) {
  json j = good();
  j["r"] = int64_t(1) << 40;
  expect_refused(j, {"'r'", "1099511627776", "[1, 65536]"});
  j["r"] = 0;
  expect_refused(j, {"'r'", "[1, 65536]"});
  j["r"] = -4;
  expect_refused(j, {"'r'", "-4"});
  j = good();
  j["lora_alpha"] = 0;
  expect_refused(j, {"'lora_alpha'", "positive"});
  write(R"({"peft_type": "LORA", "r": 8, "lora_alpha": 1e999, "target_modules": ["q_proj"]})");
  expect_error([&] { load_lora_config(dir_); }, {"adapter_config.json", "not valid JSON"});
  j = good();
  j["use_rslora"] = true;
  expect_refused(j, {"use_rslora"});
  j = good();
  j["use_dora"] = true;
  expect_refused(j, {"use_dora"});
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
