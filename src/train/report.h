#pragma once
#include <nlohmann/json.hpp>

#include "core/memory.h"

namespace longctx {

// {"device": B, "host": B, "disk": B, "tags": {"device": {"weights": B, ...}, ...}}
// Peaks; tags with a zero peak are left out.
nlohmann::json peak_bytes_json(const MemoryTracker& t);
double median(std::vector<double> v);

}  // namespace longctx
