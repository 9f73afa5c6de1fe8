// LlamaConfig: the fields of a Hugging Face config.json that the engine uses,
// for the Llama family: model_type llama, mistral, qwen2 and qwen3. Read from
// and written to HF's JSON spelling.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

struct RopeScaling {
  std::string type = "default";  // "default" | "linear" | "llama3" | "yarn"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;       // llama3, yarn
  // yarn (0: absent): attention_factor scales cos and sin; absent, it is
  // 0.1 ln(factor) + 1, or from mscale / mscale_all_dim when both are set.
  double attention_factor = 0, mscale = 0, mscale_all_dim = 0;
  double beta_fast = 32, beta_slow = 1;
  bool truncate = true;  // floor / ceil the correction range (transformers 5)
};

struct LlamaConfig {
  std::string model_type = "llama";  // "llama" | "mistral" | "qwen2" | "qwen3"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;          // C
  int64_t intermediate_size = 0;    // F
  int64_t num_hidden_layers = 0;    // L
  int64_t num_attention_heads = 0;  // NH
  int64_t num_key_value_heads = 0;  // NKV (defaults to NH)
  int64_t head_dim = 0;             // HS (defaults to C / NH; qwen3: 128)
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;
  std::string torch_dtype = "float32";
  int64_t bos_token_id = -1, eos_token_id = -1;  // -1: absent
  // Biases: llama and qwen3 `attention_bias` (q, k, v and o), llama `mlp_bias`
  // (gate, up, down). qwen2 always has q, k, v biases and no others; mistral none.
  bool attention_bias = false, mlp_bias = false;
  // Sliding-window attention. mistral: every layer when sliding_window is set
  // (absent: 4096, null: none). qwen2/3: only with use_sliding_window, on the
  // layers >= max_window_layers, or as layer_types says when it is given.
  int64_t sliding_window = 0;  // tokens; 0: null
  bool use_sliding_window = false;
  int64_t max_window_layers = 28;
  std::vector<std::string> layer_types;  // "full_attention" | "sliding_attention" per layer, or empty

  int64_t q_dim() const { return num_attention_heads * head_dim; }   // Cq
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }  // Ckv
  bool qkv_bias() const { return model_type == "qwen2" || attention_bias; }
  bool o_bias() const { return attention_bias; }
  bool qk_norm() const { return model_type == "qwen3"; }  // RMSNorm over each head of q and k, before rope
  // The attention window of block l: key j is visible to query i iff
  // i - window < j <= i (0: the whole causal prefix).
  int64_t window(int64_t layer) const;
  bool any_window() const;
  // Throws naming the field when something cannot work (NH % NKV, odd head_dim, ...).
  void validate() const;
};

// Parse HF config.json text; `source` names the file in error messages.
// Accepts rope settings under `rope_scaling` or `rope_parameters`.
LlamaConfig llama_config_from_json(const std::string& text, const std::string& source);
LlamaConfig load_llama_config(const std::string& path);
// config.json at path with the fields of `override_json` (a JSON object's
// text, "" for none) replacing its own: rope_scaling, rope_parameters or
// rope_theta given there replace the file's rope settings in either layout.
LlamaConfig load_llama_config(const std::string& path, const std::string& override_json);
// The fields of override_json replace those of config_json (both JSON objects' text).
std::string merge_config_json(const std::string& config_json, const std::string& override_json,
                              const std::string& source);
std::string llama_config_to_json(const LlamaConfig& c);  // HF spelling, its own model_type

}  // namespace longctx
