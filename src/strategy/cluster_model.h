// Per-rank memory and step time of a context-parallel step on a cluster, for
// `longctx plan --ranks N`: the single-device plan on T/P tokens, the CP
// kind's own buffers and traffic, ZeRO sharding of the model state, and a
// precision (fp32 as on this CPU backend, or bf16 activations with fp32
// master weights and AdamW state as on GPUs: 16 bytes per trained parameter).
#pragma once
#include <nlohmann/json.hpp>

#include "parallel/cp_kind.h"
#include "strategy/memory_model.h"
#include "strategy/time_model.h"

namespace longctx {

struct ClusterSpec {
  int ranks = 1, ranks_per_node = 8;
  double intra_gbps = 300, inter_gbps = 40;  // per rank, each direction
  int act_bytes = 4;                         // 4: fp32 everywhere; 2: bf16 activations and weights
  int zero = 0;                              // 0..3 (3: parameters sharded, one block gathered at a time)
  int cp_ulysses = 8;                        // hybrid: Ulysses group size (ring across the groups)
};

struct RankPrediction {
  MemoryPrediction mem;  // peak per tier and tag, one rank
  double compute_s = 0, comm_s = 0, step_s = 0;
  double comm_bytes = 0;  // sent by one rank per step
  nlohmann::json to_json() const;
};

RankPrediction predict_cp(const LlamaConfig& c, const Plan& p, int64_t B, int64_t T, CpKind kind,
                          const ClusterSpec& cl, const MachineRates& r, Purpose why);
// What chunk modes add to a step's passes over the blocks: a first pass over
// every chunk (1: SeCO's, forward with only K/V in the last block; 2:
// SpaCO's, a whole forward with the loss), and the share of the chunks that
// are rerun with a backward (SpaCO: budget / k, in expectation).
struct ChunkPasses {
  int first = 0;
  double backward_share = 1;
  int64_t chunks = 0;  // k (0: not chunked)
};
// Bytes one rank sends per step for the attention of every block (forward,
// the recompute of `recomputes` forwards, backward, and the chunk passes),
// fp32 elements scaled by act_bytes / 4. T: the (chunk-padded) length.
double cp_bytes_per_step(const LlamaConfig& c, int64_t B, int64_t T, CpKind kind, int P, int recomputes,
                         int act_bytes, int ulysses_group = 1, ChunkPasses chunks = {});
// The same for a plan as `grad` / `train` run it (chunk sizes resolved, padding included).
double cp_attention_bytes(const LlamaConfig& c, const Plan& p, int64_t B, int64_t T, CpKind kind,
                          const ClusterSpec& cl);
// The longest T (a multiple of 2P) that fits the budgets of p on each rank; 0 if none.
int64_t longest_cp_length(const LlamaConfig& c, const Plan& p, CpKind kind, const ClusterSpec& cl,
                          const MachineRates& r, Purpose why);

}  // namespace longctx
