// Training checkpoints that survive crashes:
//   OUT/checkpoints/step_NNNNNNNN/{model,optimizer}.safetensors, state.json, COMPLETE
// written under a temporary name, fsynced, renamed, and marked complete last.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/params.h"

namespace longctx {

struct OptimState {
  ParamSet& m;
  ParamSet& v;
};

// Writes the checkpoint of `step` and prunes all but the newest keep_last
// complete ones (never the one just written).
void save_checkpoint(const std::string& out_dir, int64_t step, const ParamSet& w, const OptimState& opt,
                     const nlohmann::json& state, int64_t keep_last);
// Path of the newest complete checkpoint under out_dir, or "" if none.
std::string latest_checkpoint(const std::string& out_dir);
// Fills w, m, v and returns state.json.
nlohmann::json load_checkpoint(const std::string& dir, ParamSet& w, const OptimState& opt);

}  // namespace longctx
