// Stands in for cuDNN attention when it is not built (no CUDA, or cmake/cudnn.cmake did not find the
// cudnn-frontend headers, cudnn.h or libcudnn).
#include "core/check.h"
#include "kernels/cuda/cudnn/attention_cudnn.h"

namespace longctx::cuda {

namespace {
constexpr const char* kWhy =
    "cuDNN attention not built: configure with CUDA, the cudnn-frontend headers "
    "(LONGCTX_CUDNN_FRONTEND_INCLUDE), "
    "cudnn.h (LONGCTX_CUDNN_INCLUDE) and libcudnn (LONGCTX_CUDNN_LIB)";
}

bool cudnn_attention_built() { return false; }
std::string cudnn_attention_versions() { return kWhy; }

size_t cudnn_attention_workspace_bytes(const SdpaDims&, bool, bool) { FAIL(kWhy); }
size_t cudnn_attention_workspace_bytes(const SdpaDims&, bool, bool, bool) { FAIL(kWhy); }

void cudnn_attention_forward(void*, float*, const void*, const void*, const void*, const SdpaDims&, bool,
                             float, void*, void*) {
  FAIL(kWhy);
}

void cudnn_attention_backward(void*, void*, void*, const void*, const void*, const void*, const void*,
                              const void*, const float*, const SdpaDims&, bool, float, bool, void*, void*) {
  FAIL(kWhy);
}

}  // namespace longctx::cuda
