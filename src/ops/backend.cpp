#include "ops/backend.h"

#include "kernels/cuda/cuda_info.h"
#include "kernels/cuda/cuda_memory.h"

namespace longctx {

Backend parse_device(const std::string& name) {
  if (name == "cpu") return Backend::cpu;
  std::string why;
  const bool have_gpu = cuda_built() && !cuda_devices(&why).empty();
  if (name == "auto") return have_gpu ? Backend::cuda : Backend::cpu;
  CHECK(name == "cuda", "--device ", name, ": expected cpu, cuda or auto");
  CHECK(have_gpu, "--device cuda: ", why.empty() ? "no GPU" : why);
  return Backend::cuda;
}

void setup_backend(Context& ctx, Memory& mem, Backend b) {
  ctx.backend = b;
  ctx.mem = &mem;
  ctx.stream = nullptr;  // the default stream: every op and copy in order
  if (b == Backend::cuda) {
    mem.set_allocator(Tier::device, cuda::make_device_allocator());
    mem.set_allocator(Tier::host, cuda::make_pinned_allocator());
  }
}

}  // namespace longctx
