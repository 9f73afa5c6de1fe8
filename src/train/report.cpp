#include "train/report.h"

#include <algorithm>

namespace longctx {

nlohmann::json peak_bytes_json(const MemoryTracker& t) {
  nlohmann::json j, tags = nlohmann::json::object();
  for (int i = 0; i < kNumTiers; i++) {
    const Tier tier = Tier(i);
    j[tier_name(tier)] = t.tier(tier).peak;
    nlohmann::json per = nlohmann::json::object();
    for (int g = 0; g < kNumTags; g++)
      if (int64_t p = t.tag(tier, Tag(g)).peak; p > 0) per[tag_name(Tag(g))] = p;
    tags[tier_name(tier)] = per;
  }
  j["tags"] = tags;
  return j;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace longctx
