#pragma once
#include <nlohmann/json.hpp>

#include "comm/comm.h"
#include "core/memory.h"
#include "strategy/memory_model.h"

namespace longctx {

// The tracker's peaks as the table `plan` predicts (same tiers, tags and JSON).
MemoryPrediction measured_peaks(const MemoryTracker& t);

// {"device": B, "host": B, "disk": B, "tags": {"device": {"weights": B, ...}, ...}}
// Peaks; tags with a zero peak are left out.
nlohmann::json peak_bytes_json(const MemoryTracker& t);
// Every rank's peaks, in rank order, each as peak_bytes_json (collective).
nlohmann::json gather_peaks(Comm& comm, const MemoryTracker& t);
double median(std::vector<double> v);

}  // namespace longctx
