#include "ops/backend.h"

#include <algorithm>
#include <cstdlib>

#include "comm/comm.h"
#include "kernels/cuda/cuda_info.h"
#include "kernels/cuda/cuda_memory.h"

namespace longctx {

namespace {
// LONGCTX_DEVICE pins what auto means (the CPU tests set cpu)
std::string pinned(const std::string& name) {
  const char* env = std::getenv("LONGCTX_DEVICE");
  return name == "auto" && env && *env ? std::string(env) : name;
}
}  // namespace

Backend parse_device(const std::string& requested) {
  const std::string name = pinned(requested);
  if (name == "cpu" || name == "cpu-staged") return Backend::cpu;
  std::string why;
  const bool have_gpu = cuda_built() && !cuda_devices(&why).empty();
  if (name == "auto") return have_gpu ? Backend::cuda : Backend::cpu;
  CHECK(name == "cuda", "--device ", name, ": expected cpu, cuda or auto (or cpu-staged, for tests)");
  CHECK(have_gpu, "--device cuda: ", why.empty() ? "no GPU" : why);
  return Backend::cuda;
}

void setup_backend(Context& ctx, Memory& mem, Backend b) {
  ctx.backend = b;
  ctx.mem = &mem;
  ctx.stream = nullptr;  // the default stream: every op and copy in order
  if (b == Backend::cuda) {
    select_gpu();
    mem.set_allocator(Tier::device, cuda::make_device_allocator());
    mem.set_allocator(Tier::host, cuda::make_pinned_allocator());
  }
}

void select_gpu() { cuda_select_device(node_rank()); }

int64_t gpu_budget_bytes(int sharing) {
  select_gpu();
  const int64_t free_b = cuda::free_bytes();
  return (free_b - std::max<int64_t>(free_b / 20, int64_t(1) << 30)) / std::max(sharing, 1);
}

DType resolve_math(const std::string& dtype, Backend b) {
  CHECK(dtype == "auto" || dtype == "fp32" || dtype == "bf16", "dtype ", dtype,
        ": expected fp32, bf16 or auto (bf16 on the GPU, fp32 on the CPU)");
  CHECK(!(dtype == "bf16" && b == Backend::cpu),
        "dtype bf16 is the GPU's math; the CPU backend computes in fp32 (dtype fp32)");
  return dtype == "bf16" || (dtype == "auto" && b == Backend::cuda) ? DType::BF16 : DType::F32;
}

bool device_memory_is_opaque(const std::string& device) {
  return pinned(device) == "cpu-staged" || parse_device(device) == Backend::cuda;
}

Backend setup_device(Context& ctx, Memory& mem, const std::string& device) {
  const Backend b = parse_device(device);
  setup_backend(ctx, mem, b);
  if (pinned(device) == "cpu-staged") mem.set_allocator(Tier::device, make_opaque_host_allocator());
  return b;
}

}  // namespace longctx
