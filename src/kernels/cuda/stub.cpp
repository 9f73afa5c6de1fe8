// Stands in for the CUDA backend when it is not built.
#include "core/check.h"
#include "kernels/cuda/cuda_info.h"

namespace longctx {

bool cuda_built() { return false; }
std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none) {
  if (why_none) *why_none = "CUDA backend not built (no nvcc at configure time)";
  return {};
}
void* cuda_malloc(size_t) { FAIL("CUDA backend not built (no nvcc at configure time)"); }
void cuda_free(void*) {}
void cuda_to_device(void*, const void*, size_t) { FAIL("CUDA backend not built"); }
void cuda_to_host(void*, const void*, size_t) { FAIL("CUDA backend not built"); }

}  // namespace longctx
