// The time model: FLOPs of a step under a plan, split into what BLAS runs
// (matmuls) and what the attention kernel runs, turned into seconds with
// rates measured on this machine (or given), plus the offload copies that
// the copy thread overlaps with compute.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/context.h"
#include "model/config.h"
#include "strategy/plan.h"

namespace longctx {

struct MachineRates {
  double gemm_gflops = 0;  // matmuls of the model's shapes
  double attn_gflops = 0;  // flash attention forward + backward, per counted FLOP
  double host_gbps = 0;    // memcpy to and from the host tier
  double disk_gbps = 0;    // sequential write + read of the offload dir
  nlohmann::json to_json() const;
};
// A second or so of small benchmarks with the model's shapes, on the CPU or on the backend of `on` (the
// GPU: its GEMMs and attention in its math, and copies between it and pinned host memory), in memory of
// their own; disk only when `disk_dir` is not empty. Measured once per process for the same shapes,
// directory and device (later calls return the first figures).
MachineRates measure_rates(const LlamaConfig& c, const std::string& disk_dir = "",
                           const Context* on = nullptr);

struct TimePrediction {
  double gemm_flops = 0, attn_flops = 0;  // executed, recompute included
  double model_flops = 0;                 // the MFU convention: no recompute
  double copy_bytes = 0;                  // offload traffic per step
  double compute_s = 0, copy_s = 0, step_s = 0;
  // offload_model host: each unit's weights to the device per pass and its gradients back (not overlapped
  // yet), and AdamW by the CPU on the host state
  double model_copy_bytes = 0, model_copy_s = 0, host_update_s = 0;
  double optim_disk_s = 0;  // offload_optimizer disk: the moments read from the disk and written back
  nlohmann::json to_json() const;
};
TimePrediction predict_time(const LlamaConfig& c, const Plan& p, int64_t B, int64_t T, const MachineRates& r);

}  // namespace longctx
