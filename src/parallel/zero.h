// ZeRO across the ranks of a data- or context-parallel run, on the flat
// vector of trained parameters (all weights, or the LoRA adapters):
//   stage 0: gradients all-reduced, every rank keeps the whole AdamW state;
//   stage 1: AdamW moments sharded: each rank updates its part of the weights,
//            then the parts are all-gathered;
//   stage 2: as 1, gradients reduce-scattered (each rank reduces only its part).
// (Stage 3, parameters gathered per block, is not built yet.) The flat vector
// is cut into P contiguous parts of ceil(n / P); part r belongs to rank r.
#pragma once
#include <vector>

#include "comm/comm.h"
#include "io/safetensors.h"
#include "ops/adamw.h"

namespace longctx {

class ZeroOptimizer {
 public:
  // w, g: flat (n) views of the trained parameters and their gradients;
  // tensors: the named parameters inside w (for weight decay and checkpoints).
  ZeroOptimizer(Tensor w, Tensor g, std::vector<NamedTensor> tensors, int stage, Comm& comm, Memory& mem);
  int stage() const { return stage_; }
  void reduce_grads();                // after the last micro-batch of a step
  double grad_sq_norm(Context& ctx);  // of the (reduced) gradient, every rank the same
  void scale_grads(float s, Context& ctx);
  // AdamW on this rank's part (decay only on matrices), then the weights re-assembled.
  void step(AdamWParams p, float weight_decay, Context& ctx);
  // The whole moments as named tensors (m., v. as in checkpoints), gathered
  // into host scratch; load() takes this rank's part back from such tensors.
  void gather_state(std::vector<NamedTensor>& m, std::vector<NamedTensor>& v);
  void load_state(const std::vector<NamedTensor>& m, const std::vector<NamedTensor>& v);

 private:
  Tensor w_, g_;
  std::vector<NamedTensor> tensors_;
  std::vector<int64_t> offset_;  // of each tensor in the flat vector
  int stage_;
  Comm& comm_;
  int64_t n_, lo_, hi_;   // this rank's part [lo, hi)
  Buffer m_, v_;          // (hi - lo), or (n) at stage 0
  Buffer mfull_, vfull_;  // host scratch for checkpoints
  Memory& mem_;
};

}  // namespace longctx
