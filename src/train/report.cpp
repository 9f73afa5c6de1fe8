#include "train/report.h"

#include <algorithm>

namespace longctx {

MemoryPrediction measured_peaks(const MemoryTracker& t) {
  MemoryPrediction m;
  for (int i = 0; i < kNumTiers; i++) {
    m.tier[size_t(i)] = t.tier(Tier(i)).peak;
    for (int g = 0; g < kNumTags; g++) m.tag[size_t(i)][size_t(g)] = t.tag(Tier(i), Tag(g)).peak;
  }
  return m;
}

nlohmann::json peak_bytes_json(const MemoryTracker& t) { return measured_peaks(t).to_json(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace longctx
