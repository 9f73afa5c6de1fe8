// The Llama family beyond Llama: Qwen2/2.5, Qwen3 and Mistral config.json files as published (and as
// transformers 5 writes them), their parameter tables, sliding windows per layer, YaRN against values
// from transformers' _compute_yarn_parameters, the JSON round trip, and model.override's merge.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "harness.h"
#include "model/config.h"
#include "model/params.h"
#include "model/rope_table.h"
#include "strategy/memory_model.h"

namespace longctx::test {
namespace {

using json = nlohmann::json;

// Qwen2.5-7B-Instruct's config.json with the YaRN block its model card gives for 128K.
const char* kQwen25 = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
  "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28,
  "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 152064,
  "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}
})";

// Qwen3-8B's config.json.
const char* kQwen3 = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 12288, "max_position_embeddings": 40960,
  "max_window_layers": 36, "model_type": "qwen3", "num_attention_heads": 32, "num_hidden_layers": 36,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000,
  "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936
})";

// Mistral-7B-v0.1's config.json: a 4096-token window on every layer.
const char* kMistral01 = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
  "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000
})";

LlamaConfig parse(const json& j) { return llama_config_from_json(j.dump(), "fam/config.json"); }

json small(const char* type) {
  return {{"model_type", type},      {"vocab_size", 50},       {"hidden_size", 32},
          {"intermediate_size", 48}, {"num_hidden_layers", 4}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}};
}

std::vector<std::string> names(const LlamaConfig& c) {
  std::vector<std::string> n;
  for (const ParamSpec& s : llama_param_table(c)) n.push_back(s.name);
  return n;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(Families, Qwen25WithYarn) {
  const LlamaConfig c = llama_config_from_json(kQwen25, "qwen25.json");
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_TRUE(c.qkv_bias());
  EXPECT_FALSE(c.o_bias());
  EXPECT_FALSE(c.qk_norm());
  EXPECT_FALSE(c.any_window()) << "use_sliding_window is false";
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 32768);
  // transformers 5 (_compute_yarn_parameters), in double: ramp over indices [23, 40]
  const std::vector<double> f = rope_inv_freq(c);
  const std::pair<int, double> want[] = {{0, 1.0},
                                         {10, 1.154781984689e-01},
                                         {20, 1.333521432163e-02},
                                         {30, 1.064360981247e-03},
                                         {40, 4.445698525097e-05},
                                         {50, 5.133812566143e-06},
                                         {63, 3.102344401879e-07}};
  for (auto [i, v] : want) EXPECT_NEAR(f[size_t(i)], v, 1e-11 * v) << "inv_freq " << i;
  EXPECT_NEAR(rope_attention_scale(c), 0.1 * std::log(4.0) + 1, 1e-15);
  const std::vector<std::string> n = names(c);
  EXPECT_TRUE(has(n, "model.layers.27.self_attn.q_proj.bias"));
  EXPECT_TRUE(has(n, "model.layers.0.self_attn.v_proj.bias"));
  EXPECT_FALSE(has(n, "model.layers.0.self_attn.o_proj.bias"));
  EXPECT_FALSE(has(n, "model.layers.0.mlp.down_proj.bias"));
}

TEST(Families, Qwen3HasQkNormsAndItsOwnHeadDim) {
  const LlamaConfig c = llama_config_from_json(kQwen3, "qwen3.json");
  EXPECT_TRUE(c.qk_norm());
  EXPECT_FALSE(c.qkv_bias());
  EXPECT_EQ(c.q_dim(), 32 * 128);
  const std::vector<std::string> n = names(c);
  EXPECT_TRUE(has(n, "model.layers.35.self_attn.q_norm.weight"));
  EXPECT_TRUE(has(n, "model.layers.35.self_attn.k_norm.weight"));
  EXPECT_FALSE(has(n, "model.layers.0.self_attn.q_proj.bias"));
  // head_dim absent: Qwen3Config's 128, not hidden / heads
  json j = small("qwen3");
  EXPECT_EQ(parse(j).head_dim, 128);
  j["attention_bias"] = true;
  const LlamaConfig b = parse(j);
  EXPECT_TRUE(b.qkv_bias() && b.o_bias());
  for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"})
    EXPECT_TRUE(has(names(b), std::string("model.layers.1.self_attn.") + m + ".bias")) << m;
  // the parameter count of the plan: every bias and norm row, 64-byte aligned like ParamSet's
  int64_t n_params = 0;
  for (const ParamSpec& s : llama_param_table(b)) n_params += (s.shape.numel() + 15) / 16 * 16;
  EXPECT_EQ(param_bytes(b), 4 * n_params);
}

TEST(Families, SlidingWindowsAsTransformersAppliesThem) {
  const LlamaConfig m = llama_config_from_json(kMistral01, "mistral.json");
  for (int64_t l : {0, 31}) EXPECT_EQ(m.window(l), 4096);
  EXPECT_FALSE(m.qkv_bias());
  json j = small("mistral");
  EXPECT_EQ(parse(j).window(0), 4096) << "MistralConfig's default";
  j["sliding_window"] = nullptr;
  EXPECT_FALSE(parse(j).any_window());
  j["attention_bias"] = true;  // MistralAttention has no biases whatever the config says
  EXPECT_FALSE(parse(j).qkv_bias());
  // qwen2/3: only with use_sliding_window, and then from max_window_layers on
  json q = small("qwen2");
  q["sliding_window"] = 64;
  EXPECT_FALSE(parse(q).any_window());
  q["use_sliding_window"] = true, q["max_window_layers"] = 2;
  const LlamaConfig a = parse(q);
  EXPECT_EQ(a.window(0), 0);
  EXPECT_EQ(a.window(1), 0);
  EXPECT_EQ(a.window(2), 64);
  EXPECT_EQ(a.window(3), 64);
  // transformers 5 writes layer_types, which then rule
  q["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention", "full_attention"};
  const LlamaConfig t = parse(q);
  EXPECT_EQ(t.window(0), 64);
  EXPECT_EQ(t.window(1), 0);
  EXPECT_EQ(t.window(2), 64);
  q["layer_types"] = {"sliding_attention", "full_attention"};
  expect_error([&] { parse(q); }, {"fam/config.json", "layer_types has 2 entries for 4 layers"});
  q["layer_types"] = {"sliding_attention", "full_attention", "full_attention", "chunked_attention"};
  expect_error([&] { parse(q); }, {"fam/config.json", "layer_types[3]", "'chunked_attention'"});
  q["layer_types"] = {"sliding_attention", "full_attention", "full_attention", "full_attention"};
  q["use_sliding_window"] = false;
  expect_error([&] { parse(q); }, {"fam/config.json", "layer_types[0] is sliding_attention", "null"});
  json l = small("llama");
  l["sliding_window"] = 8;  // LlamaAttention has no window
  EXPECT_FALSE(parse(l).any_window());
}

TEST(Families, YarnInBothLayoutsAndItsDefaults) {
  json j = small("qwen2");
  j["max_position_embeddings"] = 4096;
  j["rope_theta"] = 1e4;
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 8.0}};  // original: max_position_embeddings
  const LlamaConfig a = parse(j);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_EQ(a.rope_scaling.beta_fast, 32);
  EXPECT_EQ(a.rope_scaling.beta_slow, 1);
  EXPECT_TRUE(a.rope_scaling.truncate);
  EXPECT_NEAR(rope_attention_scale(a), 0.1 * std::log(8.0) + 1, 1e-15);
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "yarn"},
                          {"rope_theta", 5e5},
                          {"factor", 4.0},
                          {"attention_factor", 0.9},
                          {"beta_fast", 0},
                          {"truncate", false},
                          {"original_max_position_embeddings", 1024}};
  const LlamaConfig b = parse(j);
  EXPECT_EQ(b.rope_theta, 5e5);
  EXPECT_EQ(b.rope_scaling.beta_fast, 32) << "0 means the default, as `or 32` in transformers";
  EXPECT_EQ(rope_attention_scale(b), 0.9);
  EXPECT_FALSE(b.rope_scaling.truncate);
  // DeepSeek-style mscale / mscale_all_dim
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 40.0}, {"mscale", 1.0}, {"mscale_all_dim", 0.5}};
  const double g1 = 0.1 * std::log(40.0) + 1, g2 = 0.05 * std::log(40.0) + 1;
  EXPECT_NEAR(rope_attention_scale(parse(j)), g1 / g2, 1e-15);
  // factor absent: max_position_embeddings / original_max_position_embeddings
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"original_max_position_embeddings", 1024}};
  EXPECT_EQ(parse(j).rope_scaling.factor, 4.0);
  j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  expect_error([&] { parse(j); }, {"fam/config.json", "'dynamic'", "not supported", "yarn"});
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 2.0}, {"attention_factor", 0.0}};
  expect_error([&] { parse(j); }, {"fam/config.json", "attention_factor", "positive"});
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 2.0}, {"beta_fast", 1}, {"beta_slow", 4}};
  expect_error([&] { parse(j); }, {"fam/config.json", "beta_fast >= beta_slow"});
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 2.0}, {"partial_rotary_factor", 0.5}};
  expect_error([&] { parse(j); }, {"fam/config.json", "partial_rotary_factor"});
}

// config.json out and in again: the same config, the same text, the family's own fields.
TEST(Families, RoundTripKeepsModelTypeAndEveryField) {
  json q3 = small("qwen3");
  q3["head_dim"] = 12, q3["attention_bias"] = true, q3["use_sliding_window"] = true;
  q3["sliding_window"] = 100, q3["max_window_layers"] = 1, q3["tie_word_embeddings"] = true;
  q3["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 2e5},
                           {"factor", 4.0},       {"attention_factor", 1.25},
                           {"beta_fast", 16.0},   {"beta_slow", 2.0},
                           {"truncate", false},   {"original_max_position_embeddings", 512}};
  json q2 = small("qwen2");
  q2["layer_types"] = {"full_attention", "full_attention", "sliding_attention", "full_attention"};
  q2["use_sliding_window"] = true, q2["sliding_window"] = 7;
  json mi = small("mistral");
  mi["sliding_window"] = nullptr, mi["head_dim"] = 16;
  json ll = small("llama");
  ll["attention_bias"] = true, ll["mlp_bias"] = true;
  for (const json& j : {q3, q2, mi, ll}) {
    const LlamaConfig a = parse(j);
    const std::string text = llama_config_to_json(a);
    const json out = json::parse(text);
    EXPECT_EQ(out["model_type"], j["model_type"]);
    const LlamaConfig b = llama_config_from_json(text, "round trip");
    EXPECT_EQ(llama_config_to_json(b), text);
    EXPECT_EQ(names(a), names(b));
    for (int64_t l = 0; l < a.num_hidden_layers; l++) EXPECT_EQ(a.window(l), b.window(l)) << text;
    EXPECT_EQ(rope_inv_freq(a), rope_inv_freq(b));
    EXPECT_EQ(rope_attention_scale(a), rope_attention_scale(b));
  }
  const json o3 = json::parse(llama_config_to_json(parse(q3)));
  EXPECT_EQ(o3["architectures"][0], "Qwen3ForCausalLM");
  EXPECT_EQ(o3["attention_bias"], true);
  EXPECT_EQ(o3["use_sliding_window"], true);
  EXPECT_EQ(o3["max_window_layers"], 1);
  EXPECT_EQ(o3["rope_scaling"]["rope_type"], "yarn");
  EXPECT_EQ(o3["rope_scaling"]["attention_factor"], 1.25);
  EXPECT_EQ(o3["rope_scaling"]["truncate"], false);
  EXPECT_EQ(o3["rope_theta"], 2e5);
  EXPECT_EQ(json::parse(llama_config_to_json(parse(mi)))["sliding_window"], nullptr);
  EXPECT_EQ(json::parse(llama_config_to_json(parse(q2)))["layer_types"], q2["layer_types"]);
}

// model.override: the fields replace the file's; rope settings replace those of either layout.
TEST(Families, OverrideReplacesTheRopeSettingsOfEitherLayout) {
  json v5 = small("qwen2");
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  const json yarn = {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}},
                     {"max_position_embeddings", 131072}};
  const LlamaConfig a = llama_config_from_json(merge_config_json(v5.dump(), yarn.dump(), "v5"), "merged");
  EXPECT_EQ(a.rope_scaling.type, "yarn");
  EXPECT_EQ(a.rope_theta, 1e6) << "the file's theta stays";
  EXPECT_EQ(a.max_position_embeddings, 131072);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings, 131072);
  // only theta: the file's scaling stays (moved to the 4.x layout)
  json v5s = v5;
  v5s["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e6}};
  const LlamaConfig b =
      llama_config_from_json(merge_config_json(v5s.dump(), R"({"rope_theta": 5e6})", "v5"), "merged");
  EXPECT_EQ(b.rope_theta, 5e6);
  EXPECT_EQ(b.rope_scaling.type, "linear");
  EXPECT_EQ(b.rope_scaling.factor, 2.0);
  // a 4.x file, a 5.x override
  json v4 = small("llama");
  v4["rope_theta"] = 1e4, v4["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  const LlamaConfig c = llama_config_from_json(
      merge_config_json(
          v4.dump(), R"({"rope_parameters": {"rope_type": "yarn", "factor": 8, "rope_theta": 3e4}})", "v4"),
      "merged");
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_EQ(c.rope_theta, 3e4);
  expect_error([&] { merge_config_json(v4.dump(), "[1]", "v4"); }, {"model.override", "mapping"});
}

}  // namespace
}  // namespace longctx::test
