// Training checkpoints that survive crashes:
//   OUT/checkpoints/step_NNNNNNNN/{model,optimizer}.safetensors, state.json, COMPLETE
// written under a temporary name, fsynced, renamed, and marked complete last.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "io/safetensors.h"
#include "model/params.h"

namespace longctx {

// What training changes: the trained tensors (all weights, or the LoRA
// adapters) and their AdamW moments, by name.
struct TrainedState {
  std::vector<NamedTensor> w, m, v;
};
std::vector<NamedTensor> named_tensors(const ParamSet& p);
std::vector<NamedTensor> named_tensors(const LoraSet& p);

// Writes the checkpoint of `step` and prunes all but the newest keep_last
// complete ones (never the one just written). When a write fails (disk full)
// it throws naming the step, after removing what it had written: the complete
// checkpoints before it are untouched.
void save_checkpoint(const std::string& out_dir, int64_t step, const TrainedState& t,
                     const nlohmann::json& state, int64_t keep_last);
// The first non-finite value of the weights or moments ("m."/"v." name[index]),
// or "" when all are finite: a checkpoint is never written from a poisoned state.
std::string first_non_finite(const TrainedState& t);
// Path of the newest complete checkpoint under out_dir, or "" if none.
std::string latest_checkpoint(const std::string& out_dir);
// Fills t's tensors and returns state.json.
nlohmann::json load_checkpoint(const std::string& dir, const TrainedState& t);

}  // namespace longctx
