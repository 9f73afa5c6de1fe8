// Stands in for the CUDA backend when it is not built.
#include "kernels/cuda/cuda_info.h"

namespace longctx {

bool cuda_built() { return false; }
std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none) {
  if (why_none) *why_none = "CUDA backend not built (no nvcc at configure time)";
  return {};
}

}  // namespace longctx
