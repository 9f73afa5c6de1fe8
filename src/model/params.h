// The parameter table: one row per weight tensor, in HF names and shapes.
// It drives allocation, initialisation, checkpoint I/O and gradient output.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/memory.h"
#include "model/config.h"
#include "model/lora.h"

namespace longctx {

enum class ParamKind {
  embed,
  ln1,
  wq,
  bq,
  wk,
  bk,
  wv,
  bv,
  wo,
  bo,
  q_norm,
  k_norm,
  ln2,
  wgate,
  bgate,
  wup,
  bup,
  wdown,
  bdown,
  final_norm,
  lm_head
};
bool is_norm(ParamKind k);  // RMSNorm weights: initialised to ones

struct ParamSpec {
  std::string name;  // HF name, e.g. model.layers.3.self_attn.q_proj.weight
  Shape shape;
  ParamKind kind;
  int layer = -1;  // -1 for embed, final_norm, lm_head
};

// Every parameter of the model; lm_head is absent when embeddings are tied,
// biases and q/k norms are there when the config has them (qkv_bias, o_bias,
// mlp_bias, qk_norm). A block's rows are contiguous.
std::vector<ParamSpec> llama_param_table(const LlamaConfig& c);

// Optional rows (biases, q/k norms) are undefined tensors when the model has none.
struct LayerParams {
  Tensor ln1;                // (C)
  Tensor wq, wk, wv;         // (Cq, C), (Ckv, C), (Ckv, C)
  Tensor bq, bk, bv;         // (Cq), (Ckv), (Ckv): qwen2, attention_bias
  Tensor wo, bo;             // (C, Cq), (C): attention_bias
  Tensor q_norm, k_norm;     // (HS) each: qwen3, RMSNorm of every head before rope
  Tensor ln2;                // (C)
  Tensor wgate, wup, wdown;  // (F, C), (F, C), (C, F)
  Tensor bgate, bup, bdown;  // (F), (F), (C): mlp_bias
  LayerLora lora;            // adapters (or their gradients); undefined without LoRA
};

// All parameters (or all gradients) in one buffer, with a view per row of the
// table and by role. lm_head aliases embed when tied.
class ParamSet {
 public:
  ParamSet(const LlamaConfig& c, Memory& mem, Tier tier, Tag tag);
  // Views only, over no storage of its own: every view is undefined until
  // bind() points a range of the flat layout somewhere (ZeRO-3's gathered
  // blocks, ZeRO-2's per-block gradient buffers).
  explicit ParamSet(const LlamaConfig& c);
  const std::vector<ParamSpec>& specs() const { return specs_; }
  const Tensor& tensor(size_t i) const { return views_[i]; }
  Tensor find(const std::string& name) const;  // undefined if absent
  Tensor all() const { return storage_.t(); }  // every element, flat
  void zero() { storage_.zero(); }
  // The flat layout: where row i starts, and the whole length (views are
  // padded to 64 bytes). Block l's rows are one range, [layer_range(l)).
  int64_t offset(size_t i) const { return offsets_[i]; }
  int64_t flat_size() const { return flat_size_; }
  std::pair<int64_t, int64_t> layer_range(int64_t l) const;  // [begin, end)
  // Every view whose row starts in [first, first + n) now lies at `to` +
  // (offset - first) (to == nullptr: undefined again).
  void bind(int64_t first, int64_t n, float* to, Tier tier);
  Tensor embed, final_norm, lm_head;
  std::vector<LayerParams> layers;

 private:
  void set_view(size_t i, Tensor v);
  std::vector<ParamSpec> specs_;
  std::vector<int64_t> offsets_;
  int64_t flat_size_ = 0;
  bool tied_ = false;
  Buffer storage_;
  std::vector<Tensor> views_;
};

// The units ZeRO 2-3 and weight offload move one at a time, as [begin, end) of the flat layout: the
// embedding, each block, then the final norm with the LM head (GradStep's UnitHook numbering).
std::vector<std::pair<int64_t, int64_t>> param_units(const ParamSet& p);

// HF-style init: normal(0, initializer_range) for matrices, ones for norms, zeros for biases.
void init_params_random(ParamSet& p, const LlamaConfig& c, uint64_t seed);

}  // namespace longctx
