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

// Every rank's peak bytes (tiers, and tags per tier), in rank order.
nlohmann::json gather_peaks(Comm& comm, const MemoryTracker& t) {
  const MemoryPrediction m = measured_peaks(t);
  std::vector<double> mine;  // tiers, then tags per tier
  for (int i = 0; i < kNumTiers; i++) mine.push_back(double(m.tier[size_t(i)]));
  for (int i = 0; i < kNumTiers; i++)
    for (int g = 0; g < kNumTags; g++) mine.push_back(double(m.tag[size_t(i)][size_t(g)]));
  std::vector<double> all(mine.size() * size_t(comm.size()));
  comm.all_gather(mine.data(), all.data(), int64_t(mine.size()));
  nlohmann::json out = nlohmann::json::array();
  for (int r = 0; r < comm.size(); r++) {
    const double* v = all.data() + size_t(r) * mine.size();
    MemoryPrediction p;
    for (int i = 0; i < kNumTiers; i++) p.tier[size_t(i)] = int64_t(*v++);
    for (int i = 0; i < kNumTiers; i++)
      for (int g = 0; g < kNumTags; g++) p.tag[size_t(i)][size_t(g)] = int64_t(*v++);
    out.push_back(p.to_json());
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace longctx
