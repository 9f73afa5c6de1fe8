// Plan search: every plan worth trying for a model and length, with its
// predicted memory and step time; those that fit the budgets ranked fastest
// first. Also the plan nearest to a wanted one that fits, for refusals.
#pragma once
#include <vector>

#include "strategy/memory_model.h"
#include "strategy/time_model.h"

namespace longctx {

struct Candidate {
  Plan plan;
  MemoryPrediction mem;
  TimePrediction time;
  bool fits = false;
};

// Budgets (device_mem, host_mem) and offload_dir are taken from `base`.
std::vector<Candidate> search_plans(const LlamaConfig& c, const Plan& base, int64_t B, int64_t T, Purpose why,
                                    const MachineRates& r);
// The fitting candidate that changes the fewest choices of `wanted` (then the
// fastest); nullptr if none fits.
const Candidate* nearest_fitting(const std::vector<Candidate>& all, const Plan& wanted);

}  // namespace longctx

namespace longctx {
// The plan a run uses: with `automatic`, the fastest that fits the budgets of
// `wanted`; else `wanted` itself if it fits. Otherwise throws, naming what
// does not fit and the nearest plan that would.
// The rates behind `auto` are measured on `on`'s backend (the GPU when the step runs there), else the CPU.
Plan choose_plan(const LlamaConfig& c, const Plan& wanted, bool automatic, int64_t B, int64_t T, Purpose why,
                 const Context* on = nullptr);
}  // namespace longctx
