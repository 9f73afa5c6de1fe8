// LoRA adapters: for each targeted linear W (OC, IC) of each block, A (r, IC)
// and B (OC, r) with y = x W^T + (alpha / r) x A^T B^T. Trained alone while the
// base weights stay frozen (no gradient or optimizer memory for them).
// Names and files follow PEFT: adapter_model.safetensors with
// base_model.model.<module>.lora_A.weight / lora_B.weight, and adapter_config.json.
#pragma once
#include <string>
#include <vector>

#include "core/memory.h"
#include "model/config.h"

namespace longctx {

struct LoraConfig {
  int64_t rank = 0;  // 0: no LoRA
  double alpha = 16;
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
  bool enabled() const { return rank > 0; }
  float scale() const { return rank > 0 ? float(alpha / double(rank)) : 0.f; }
};
// The HF module names LoRA may target.
const std::vector<std::string>& lora_target_names();
void validate_lora(const LoraConfig& lc);  // throws naming a bad target or rank

struct LoraPair {
  Tensor A, B;  // (r, IC), (OC, r); undefined when the module is not targeted
};
struct LayerLora {
  LoraPair q, k, v, o, gate, up, down;
};

struct LoraSpec {
  std::string name;  // PEFT name of the tensor
  Shape shape;
  int layer;
  int target;  // index in lora_target_names()
  bool is_b;
};
std::vector<LoraSpec> lora_param_table(const LlamaConfig& c, const LoraConfig& lc);

// All adapters (or their gradients / optimizer moments) in one buffer.
class LoraSet {
 public:
  LoraSet(const LlamaConfig& c, const LoraConfig& lc, Memory& mem, Tier tier, Tag tag);
  const std::vector<LoraSpec>& specs() const { return specs_; }
  const Tensor& tensor(size_t i) const { return views_[i]; }
  Tensor all() const { return storage_.t(); }
  void zero() { storage_.zero(); }
  std::vector<LayerLora> layers;

 private:
  std::vector<LoraSpec> specs_;
  Buffer storage_;
  std::vector<Tensor> views_;
};
int64_t lora_param_bytes(const LlamaConfig& c, const LoraConfig& lc);  // one LoraSet, as allocated

// PEFT's init: A ~ U(-1/sqrt(IC), 1/sqrt(IC)) (kaiming-uniform, a = sqrt(5)), B = 0.
void init_lora(LoraSet& s, uint64_t seed);
// adapter_model.safetensors + adapter_config.json in dir.
void save_lora_peft(const std::string& dir, const LoraSet& s, const LoraConfig& lc, const std::string& base);
LoraConfig load_lora_config(const std::string& dir);  // adapter_config.json
void load_lora_peft(const std::string& dir, LoraSet& s);

class ParamSet;
// W += (alpha / r) B A for every adapter: the merged model needs no LoRA.
void merge_lora(ParamSet& w, const LoraSet& s, const LoraConfig& lc);

}  // namespace longctx
