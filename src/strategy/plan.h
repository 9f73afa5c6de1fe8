// Plan: every single-device memory choice of a step in one struct, set by the
// same flags on `grad`, `train` (YAML keys, '-' as '_') and `plan`.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"
#include "model/lora.h"

namespace longctx {

enum class Recompute : uint8_t { none, full, selective };
enum class Offload : uint8_t { none, host, disk };
enum class ChunkMode : uint8_t { none, seco, spaco };

struct Plan {
  // none: every block keeps all its activations; full: only its input, the
  // block is rerun in backward; selective: input + q, k, v, attention output.
  Recompute recompute = Recompute::full;
  // Where the saved per-block state goes between forward and backward.
  Offload offload = Offload::none;
  std::string offload_dir;  // disk offload: files go here ("" = system temp dir)
  // host: the weights, their gradients and the AdamW state live in host memory, one unit (the embedding, a
  // block, the head) at a time on the device; the update runs on the CPU (full training, one rank).
  Offload model_offload = Offload::none;
  // host: only the AdamW moments live in host memory, streamed through the device in slices of
  // kOptimSlice elements during the update (the weights and gradients stay on the device). disk: in a file
  // of offload_dir, streamed through host slices; with optim_split ("split") only the second moment is on
  // the disk and the first in host memory (half each: a disk too small for both).
  Offload optim_offload = Offload::none;
  bool optim_split = false;
  static constexpr int64_t kOptimSlice = int64_t(1) << 22;
  int64_t mlp_tiles = 1;   // MLP in this many row tiles, nothing kept (0: auto)
  int64_t loss_tiles = 0;  // LM head + loss in this many row tiles (0: auto, ~32 MiB logits)
  ChunkMode chunk_mode = ChunkMode::none;
  int64_t chunk_size = 0;                // tokens per chunk (0: auto)
  int64_t chunk_budget = 0;              // SpaCO: chunks given a backward per step
  int64_t device_mem = 0, host_mem = 0;  // budgets in bytes (0: unlimited)
  LoraConfig lora;                       // rank > 0: train adapters only, base frozen
  // The device tier is GPU memory (set by the commands from --device, not a user choice): the host copies
  // the step stages through are counted on the host tier.
  bool gpu_memory = false;
  // The GPU's bf16 math: cuDNN's attention takes bf16 copies of q, k, v, out and their gradients as scratch.
  bool bf16_attention = false;
  // Chunks across more ranks than KV heads (set by the cluster model, not a user choice): the ranks that hold
  // the same KV heads, each of which keeps 1/kv_share of every page of their K/V cache.
  int kv_share = 1;
  // The K/V cache of chunk modes (not its gradients, which stay fp32): automatic is bf16 with the GPU's bf16
  // math and fp32 otherwise.
  enum class KvDtype : uint8_t { automatic, fp32, bf16 };
  KvDtype kv_dtype = KvDtype::automatic;
  // Their gradients: fp32 unless asked (automatic is fp32); bf16 halves them, each page's gradient rounded
  // after every addition into it.
  KvDtype kv_grad_dtype = KvDtype::automatic;
  bool kv_grad_bf16() const { return kv_grad_dtype == KvDtype::bf16; }
  bool kv_bf16() const {
    return kv_dtype == KvDtype::bf16 || (kv_dtype == KvDtype::automatic && bf16_attention);
  }

  bool chunked() const { return chunk_mode != ChunkMode::none; }
};

const char* recompute_name(Recompute r);
const char* offload_name(Offload o);
const char* chunk_mode_name(ChunkMode m);
Recompute parse_recompute(const std::string& s);  // errors name the flag and the choices
Offload parse_offload(const std::string& s);
ChunkMode parse_chunk_mode(const std::string& s);
int64_t parse_tiles(const std::string& flag, const std::string& s);  // "auto" -> 0

// One line: "recompute=full offload=host mlp_tiles=4 loss_tiles=auto ...".
std::string describe(const Plan& p);
nlohmann::json plan_to_json(const Plan& p);

// The plan with every `auto` resolved for (B, T) tokens of model c.
Plan resolve_plan(Plan p, const LlamaConfig& c, int64_t B, int64_t T);
// Throws naming the two choices that clash, or the one that cannot work.
void validate_plan(const Plan& p, int64_t B, int64_t T);

// The plan keys shared by `train` YAML and the CLI flags: key -> setter.
// Returns false for a key that is not a plan key.
bool set_plan_key(Plan& p, const std::string& key, const std::string& value);

}  // namespace longctx
