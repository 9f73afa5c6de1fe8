// The parameter table: one row per weight tensor, in HF names and shapes.
// It drives allocation, initialisation, checkpoint I/O and gradient output.
#pragma once
#include <string>
#include <vector>

#include "core/memory.h"
#include "model/config.h"
#include "model/lora.h"

namespace longctx {

enum class ParamKind { embed, ln1, wq, wk, wv, wo, ln2, wgate, wup, wdown, final_norm, lm_head };

struct ParamSpec {
  std::string name;  // HF name, e.g. model.layers.3.self_attn.q_proj.weight
  Shape shape;
  ParamKind kind;
  int layer = -1;  // -1 for embed, final_norm, lm_head
};

// Every parameter of the model; lm_head is absent when embeddings are tied.
std::vector<ParamSpec> llama_param_table(const LlamaConfig& c);

struct LayerParams {
  Tensor ln1;                // (C)
  Tensor wq, wk, wv;         // (Cq, C), (Ckv, C), (Ckv, C)
  Tensor wo;                 // (C, Cq)
  Tensor ln2;                // (C)
  Tensor wgate, wup, wdown;  // (F, C), (F, C), (C, F)
  LayerLora lora;            // adapters (or their gradients); undefined without LoRA
};

// All parameters (or all gradients) in one buffer, with a view per row of the
// table and by role. lm_head aliases embed when tied.
class ParamSet {
 public:
  ParamSet(const LlamaConfig& c, Memory& mem, Tier tier, Tag tag);
  const std::vector<ParamSpec>& specs() const { return specs_; }
  const Tensor& tensor(size_t i) const { return views_[i]; }
  Tensor find(const std::string& name) const;  // undefined if absent
  Tensor all() const { return storage_.t(); }  // every element, flat
  void zero() { storage_.zero(); }
  Tensor embed, final_norm, lm_head;
  std::vector<LayerParams> layers;

 private:
  std::vector<ParamSpec> specs_;
  Buffer storage_;
  std::vector<Tensor> views_;
};

// HF-style init: normal(0, initializer_range) for matrices, ones for norms.
void init_params_random(ParamSet& p, const LlamaConfig& c, uint64_t seed);

}  // namespace longctx
