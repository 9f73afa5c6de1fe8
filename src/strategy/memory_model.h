// The memory model: which buffers a step of a given plan allocates, on which
// tier and under which tag. GradStep allocates from the same StepLayout that
// predict_memory sums, so `longctx plan` and the measured peaks agree.
#pragma once
#include <array>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/memory.h"
#include "model/block.h"
#include "model/config.h"
#include "strategy/plan.h"

namespace longctx {

struct StepLayout {
  Plan plan;  // resolved: no `auto` left
  int64_t B = 0, T = 0;
  int64_t N = 0;                        // rows per pass through the blocks: B*T, or the chunk in chunked mode
  int64_t Tc = 0;                       // tokens per pass in one row (T, or the chunk size)
  int64_t mlp_tile = 0, loss_tile = 0;  // rows
  std::vector<ActSpec> saved;           // per block, from forward to backward: "inp" (N, C) + kept rows
  std::vector<ActSpec> scratch;         // one set shared by all blocks: the rows not kept
  std::vector<ActSpec> grads;           // backward scratch of one block
  int64_t saved_bytes = 0;              // table_bytes(saved)
  int64_t device_sets = 0;              // saved sets on the device tier
  int64_t offload_sets = 0;             // saved sets on the host or disk tier
};

StepLayout step_layout(const LlamaConfig& c, const Plan& p, int64_t B, int64_t T);

// Peak bytes per tier and per (tier, tag), in the shape of grad's `peak_bytes`.
struct MemoryPrediction {
  std::array<int64_t, kNumTiers> tier{};
  std::array<std::array<int64_t, kNumTags>, kNumTiers> tag{};
  nlohmann::json to_json() const;
  // "" when every tier fits its budget in p, else what does not fit. A host
  // budget of 0 means 80% of this machine's physical memory; the disk tier
  // must fit 90% of the free space of the offload directory.
  std::string overflow(const Plan& p) const;
};

enum class Purpose : uint8_t { grad, train };  // grad: `longctx grad`; train adds AdamW state
MemoryPrediction predict_memory(const LlamaConfig& c, const Plan& p, int64_t B, int64_t T, Purpose why);

int64_t param_bytes(const LlamaConfig& c);    // one ParamSet, as allocated
int64_t default_host_budget();                // 80% of physical memory
int64_t disk_budget(const std::string& dir);  // 90% of the free space there ("" : /tmp)

}  // namespace longctx
