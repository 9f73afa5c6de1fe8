// How ZeRO cuts a flat vector (weights, gradients, AdamW moments) over the P
// ranks: into units, each one contiguous range of the vector, and each unit
// into P contiguous parts of ceil(n / P) elements, the
// parts Comm's reduce_scatter_sum / all_gather_parts work on. A rank's shard
// is its part of every unit, one after another. Stages 0-1 use one unit (the
// whole vector); stages 2-3 one per block plus one for the embedding, final
// norm and LM head, so that a block's weights can be gathered, and its
// gradients reduce-scattered, on their own.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "comm/comm.h"

namespace longctx {

struct FlatRange {
  int64_t begin = 0, end = 0;  // [begin, end) of the flat vector
};

class ShardMap {
 public:
  ShardMap() = default;
  ShardMap(std::vector<FlatRange> units, int P, int rank);
  int units() const { return int(units_.size()); }
  int parts() const { return P_; }  // 1: every rank holds everything, nothing is communicated
  int64_t unit_size(int u) const { return units_[size_t(u)].n; }
  int64_t shard_size() const { return shard_n_; }
  // This rank's part of unit u: [lo, lo + n) in the unit's order, at `at` in the shard.
  int64_t own_lo(int u) const { return units_[size_t(u)].lo; }
  int64_t own_n(int u) const { return units_[size_t(u)].own; }
  int64_t shard_at(int u) const { return units_[size_t(u)].at; }
  const FlatRange& range(int u) const { return units_[size_t(u)].range; }

  // this rank's parts of a whole vector into its shard
  void take(const float* whole, float* shard) const;
  // unit (n_u) = every rank's part of unit u (collective)
  void gather_unit(int u, const float* shard, float* unit, Comm& comm) const;
  // unit (n_u) holds this rank's addends: reduce-scattered, and shard's part += the sum (collective)
  void reduce_unit(int u, float* unit, float* shard, Comm& comm) const;
  // whole vector = every rank's shard (collective), each unit gathered in place
  void gather(const float* shard, float* whole, Comm& comm) const;
  // The pieces of [begin, end) of the whole vector that lie in this rank's
  // shard: at `at` in the shard, at `whole` in the whole vector, n long.
  struct Piece {
    int64_t at, whole, n;
  };
  std::vector<Piece> pieces(int64_t begin, int64_t end) const;

 private:
  struct Unit {
    FlatRange range;
    int64_t n = 0, lo = 0, own = 0, at = 0;
  };
  std::vector<Unit> units_;
  int64_t shard_n_ = 0;
  int P_ = 1;
};

}  // namespace longctx
