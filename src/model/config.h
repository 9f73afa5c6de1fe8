// LlamaConfig: the fields of a Hugging Face Llama config.json that the engine
// uses. Read from and written to HF's JSON spelling.
#pragma once
#include <cstdint>
#include <string>

namespace longctx {

struct RopeScaling {
  std::string type = "default";  // "default" | "llama3" | "linear"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;          // C
  int64_t intermediate_size = 0;    // F
  int64_t num_hidden_layers = 0;    // L
  int64_t num_attention_heads = 0;  // NH
  int64_t num_key_value_heads = 0;  // NKV (defaults to NH)
  int64_t head_dim = 0;             // HS (defaults to C / NH)
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;
  std::string torch_dtype = "float32";
  int64_t bos_token_id = -1, eos_token_id = -1;  // -1: absent

  int64_t q_dim() const { return num_attention_heads * head_dim; }   // Cq
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }  // Ckv
  // Throws naming the field when something cannot work (NH % NKV, odd head_dim, ...).
  void validate() const;
};

// Parse HF config.json text; `source` names the file in error messages.
// Accepts rope settings under `rope_scaling` or `rope_parameters`.
LlamaConfig llama_config_from_json(const std::string& text, const std::string& source);
LlamaConfig load_llama_config(const std::string& path);
std::string llama_config_to_json(const LlamaConfig& c);  // HF spelling, model_type "llama"

}  // namespace longctx
