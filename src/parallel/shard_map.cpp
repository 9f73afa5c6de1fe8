#include "parallel/shard_map.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace longctx {

ShardMap::ShardMap(std::vector<FlatRange> units, int P, int rank) : P_(P) {
  CHECK(P >= 1 && rank >= 0 && rank < P, "[zero] rank ", rank, " of ", P);
  for (const FlatRange& r : units) {
    CHECK(r.end >= r.begin, "[zero] range [", r.begin, ", ", r.end, ")");
    Unit u;
    u.range = r;
    u.n = r.end - r.begin;
    const CommPart q = comm_part(u.n, P, rank);  // the parts Comm's collectives use
    u.lo = q.lo, u.own = q.n;
    u.at = shard_n_;
    shard_n_ += u.own;
    units_.push_back(u);
  }
}

void ShardMap::take(const float* whole, float* shard) const {
  for (const Unit& U : units_)
    if (U.own > 0) std::memcpy(shard + U.at, whole + U.range.begin + U.lo, size_t(U.own) * 4);
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

void ShardMap::gather(const float* shard, float* whole, Comm& comm) const {
  for (int u = 0; u < units(); u++) gather_unit(u, shard, whole + range(u).begin, comm);
}

std::vector<ShardMap::Piece> ShardMap::pieces(int64_t begin, int64_t end) const {
  std::vector<Piece> out;
  for (const Unit& U : units_) {
    // [begin, end) in the unit's order, then cut to this rank's part
    const int64_t b0 = std::max(begin, U.range.begin) - U.range.begin;
    const int64_t e0 = std::min(end, U.range.end) - U.range.begin;
    const int64_t a = std::max(b0, U.lo), b = std::min(e0, U.lo + U.own);
    if (a < b) out.push_back({U.at + (a - U.lo), U.range.begin + a, b - a});
  }
  return out;
}

}  // namespace longctx
