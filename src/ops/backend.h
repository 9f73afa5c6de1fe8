// Choosing and setting up the backend a run computes on.
#pragma once
#include <string>

#include "core/context.h"

namespace longctx {

// "cpu", "cuda" or "auto" (cuda when the CUDA backend is built and a GPU is visible, else cpu; the
// environment's LONGCTX_DEVICE, when set, says what auto means);
// "cpu-staged" is the CPU backend with a device tier that host code must not touch (as GPU memory):
// the tests' way to run every staging path of the GPU backend without a GPU.
Backend parse_device(const std::string& name);
// ctx.backend := b, ctx.mem := &mem; on cuda the device tier becomes GPU memory and the host tier
// pinned memory. Call before anything is allocated from mem.
void setup_backend(Context& ctx, Memory& mem, Backend b);
// This rank's GPU as the current device: its rank on the node modulo the GPUs (ranks of a node take one
// each, or share the one there is). setup_backend does it; call it first where a GPU is asked about earlier.
void select_gpu();
// The device budget a plan gets on the GPU when none is given: its free memory less a margin for the
// CUDA context, cuBLASLt's and cuDNN's workspaces and the pool's fragmentation (5%, at least 1 GiB), split
// evenly between the `sharing` ranks that compute on it (ranks_sharing_gpu).
int64_t gpu_budget_bytes(int sharing = 1);
// The GPU's math for a --dtype / `dtype:` value: "auto" (bf16 on the GPU, fp32 on the CPU), "fp32", "bf16"
// (refused on the CPU, which computes in fp32).
DType resolve_math(const std::string& dtype, Backend b);
// Whether a --device value makes the device tier memory that host code must not touch (cuda, cpu-staged):
// the plan then counts the host copies the step stages through (Plan::gpu_memory).
bool device_memory_is_opaque(const std::string& device);
// parse_device + setup_backend, "cpu-staged" included; returns the backend.
Backend setup_device(Context& ctx, Memory& mem, const std::string& device);

}  // namespace longctx
