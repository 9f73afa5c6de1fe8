// The plan flags shared by `grad`, `train` and `plan`: the same words as the
// YAML keys of `train`, with '_' written '-'.
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <memory>
#include <string>

#include "strategy/plan.h"

namespace longctx::cli {

struct PlanFlags {
  std::map<std::string, std::string> values;  // YAML key -> value as given
  std::string plan = "manual";                // manual | auto
  Plan to_plan() const;                       // throws naming the flag
  bool is_auto() const { return plan == "auto"; }
};

void add_plan_flags(CLI::App& app, PlanFlags& f);

}  // namespace longctx::cli
