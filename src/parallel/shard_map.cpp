#include "parallel/shard_map.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace longctx {

ShardMap::ShardMap(std::vector<std::vector<FlatRange>> units, int P, int rank) : P_(P) {
  CHECK(P >= 1 && rank >= 0 && rank < P, "[zero] rank ", rank, " of ", P);
  for (auto& ranges : units) {
    Unit u;
    u.ranges = std::move(ranges);
    for (const FlatRange& r : u.ranges) {
      CHECK(r.end >= r.begin, "[zero] range [", r.begin, ", ", r.end, ")");
      u.n += r.end - r.begin;
    }
    const CommPart q = comm_part(u.n, P, rank);  // the parts Comm's collectives use
    u.lo = q.lo, u.own = q.n;
    u.at = shard_n_;
    shard_n_ += u.own;
    units_.push_back(std::move(u));
  }
}

int64_t ShardMap::max_unit_size() const {
  int64_t m = 0;
  for (const Unit& u : units_) m = std::max(m, u.n);
  return m;
}

bool ShardMap::needs_scratch() const {
  for (const Unit& u : units_)
    if (u.ranges.size() > 1) return true;
  return false;
}

void ShardMap::pack(int u, const float* whole, float* unit) const {
  for (const FlatRange& r : ranges(u)) {
    std::memcpy(unit, whole + r.begin, size_t(r.end - r.begin) * 4);
    unit += r.end - r.begin;
  }
}

void ShardMap::unpack(int u, const float* unit, float* whole) const {
  for (const FlatRange& r : ranges(u)) {
    std::memcpy(whole + r.begin, unit, size_t(r.end - r.begin) * 4);
    unit += r.end - r.begin;
  }
}

void ShardMap::take(const float* whole, float* shard) const {
  for (int u = 0; u < units(); u++) {
    const Unit& U = units_[size_t(u)];
    int64_t c = 0;  // the unit's order
    for (const FlatRange& r : U.ranges) {
      const int64_t a = std::max(c, U.lo), b = std::min(c + r.end - r.begin, U.lo + U.own);
      if (a < b) std::memcpy(shard + U.at + (a - U.lo), whole + r.begin + (a - c), size_t(b - a) * 4);
      c += r.end - r.begin;
    }
  }
}

void ShardMap::gather_unit(int u, const float* shard, float* unit, Comm& comm) const {
  const Unit& U = units_[size_t(u)];
  if (U.own > 0) std::memcpy(unit + U.lo, shard + U.at, size_t(U.own) * 4);
  if (P_ == 1) return;
  CHECK(comm.size() == P_, "[zero] ", P_, " parts over ", comm.size(), " ranks");
  comm.all_gather_parts(unit, U.n);
}

void ShardMap::reduce_unit(int u, float* unit, float* shard, Comm& comm) const {
  const Unit& U = units_[size_t(u)];
  if (P_ > 1) {
    CHECK(comm.size() == P_, "[zero] ", P_, " parts over ", comm.size(), " ranks");
    comm.reduce_scatter_sum(unit, U.n);
  }
  for (int64_t i = 0; i < U.own; i++) shard[U.at + i] += unit[U.lo + i];
}

void ShardMap::gather(const float* shard, float* whole, float* scratch, Comm& comm) const {
  for (int u = 0; u < units(); u++) {
    const auto& rs = ranges(u);
    if (rs.size() == 1) {  // in place
      gather_unit(u, shard, whole + rs[0].begin, comm);
      continue;
    }
    gather_unit(u, shard, scratch, comm);
    unpack(u, scratch, whole);
  }
}

std::vector<ShardMap::Piece> ShardMap::pieces(int64_t begin, int64_t end) const {
  std::vector<Piece> out;
  for (const Unit& U : units_) {
    int64_t c = 0;
    for (const FlatRange& r : U.ranges) {
      // [begin, end) in the unit's order, then cut to this rank's part
      const int64_t b0 = std::max(begin, r.begin), e0 = std::min(end, r.end);
      if (b0 < e0) {
        const int64_t a = std::max(c + (b0 - r.begin), U.lo), b = std::min(c + (e0 - r.begin), U.lo + U.own);
        if (a < b) out.push_back({U.at + (a - U.lo), r.begin + (a - c), b - a});
      }
      c += r.end - r.begin;
    }
  }
  return out;
}

}  // namespace longctx
