// Stands in for the CUDA backend when it is not built: discovery reports no
// devices, and every kernel or memory call throws saying why.
#include "core/check.h"
#include "kernels/cuda/cuda_info.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cuda_memory.h"

namespace longctx {

namespace {
[[noreturn]] void not_built(const char* what) {
  FAIL("[cuda] ", what, ": the CUDA backend is not built (no nvcc at configure time, or LONGCTX_CUDA=OFF)");
}
}  // namespace

bool cuda_built() { return false; }
std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none) {
  if (why_none) *why_none = "CUDA backend not built (no nvcc at configure time)";
  return {};
}
void cuda_select_device(int) { not_built("cuda_select_device"); }
std::string cuda_device_pci_id() { return ""; }
void* cuda_malloc(size_t) { not_built("cuda_malloc"); }
void cuda_free(void*) {}
void cuda_to_device(void*, const void*, size_t) { not_built("cuda_to_device"); }
void cuda_to_host(void*, const void*, size_t) { not_built("cuda_to_host"); }

namespace cuda {
void embedding_forward(float*, const int32_t*, const float*, int64_t, int64_t, int64_t, void*) {
  not_built("embedding");
}
void embedding_backward(float*, const float*, const int32_t*, int64_t, int64_t, int64_t, void*) {
  not_built("embedding_backward");
}
void rmsnorm_forward(float*, float*, const float*, const float*, int64_t, int64_t, float, void*) {
  not_built("rmsnorm");
}
void rmsnorm_backward(float*, float*, const float*, const float*, const float*, const float*, int64_t,
                      int64_t, bool, void*) {
  not_built("rmsnorm_backward");
}
void matmul_forward(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, bool, void*) {
  not_built("matmul");
}
void matmul_backward(float*, float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                     bool, bool, void*) {
  not_built("matmul_backward");
}
void rope_apply(float*, const float*, const int32_t*, const float*, const float*, int64_t, int64_t, int64_t,
                float, void*) {
  not_built("rope");
}
void swiglu_forward(float*, const float*, const float*, int64_t, void*) { not_built("swiglu"); }
void swiglu_backward(float*, float*, const float*, const float*, const float*, int64_t, void*) {
  not_built("swiglu_backward");
}
double lm_head_loss(float*, float*, const float*, const float*, const int32_t*, int64_t, int64_t, int64_t,
                    double, int64_t, float*, double*, bool, void*) {
  not_built("lm_head_loss");
}
void adamw_update(float*, const float*, float*, float*, int64_t, float, float, float, float, float, int64_t,
                  void*) {
  not_built("adamw");
}
void add(float*, const float*, const float*, int64_t, void*) { not_built("add"); }
void scale(float*, float, int64_t, void*) { not_built("scale"); }
void axpy(float*, float, const float*, int64_t, void*) { not_built("axpy"); }
void fill(float*, float, int64_t, void*) { not_built("fill"); }
void add_rows(float*, int64_t, const float*, int64_t, int64_t, int64_t, void*) { not_built("add_rows"); }
void bias_add(float*, const float*, int64_t, int64_t, void*) { not_built("bias_add"); }
void bias_grad(float*, const float*, int64_t, int64_t, void*) { not_built("bias_grad"); }
void to_bf16(void*, const float*, int64_t, void*) { not_built("to_bf16"); }
void from_bf16(float*, const void*, int64_t, void*) { not_built("from_bf16"); }
double sum_squares(const float*, int64_t, void*) { not_built("sum_squares"); }
void attention_forward(float*, float*, const float*, const float*, const float*, const cpu::AttentionDims&,
                       const cpu::AttentionMask&, float, void*) {
  not_built("attention");
}
void attention_backward(float*, float*, float*, const float*, const float*, const float*, const float*,
                        const float*, const float*, float*, const cpu::AttentionDims&,
                        const cpu::AttentionMask&, float, void*) {
  not_built("attention_backward");
}
size_t attention_backward_workspace_floats(const cpu::AttentionDims&) { return 1; }
void attention_merge(float*, float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, void*) {
  not_built("attention_merge");
}

std::unique_ptr<Allocator> make_device_allocator() { not_built("device memory"); }
std::unique_ptr<Allocator> make_pinned_allocator() { not_built("pinned memory"); }
void copy_bytes(void*, const void*, size_t, void*) { not_built("copy"); }
void copy_device(void*, const void*, size_t, void*) { not_built("copy_device"); }
void copy_2d(void*, size_t, const void*, size_t, size_t, size_t, bool, void*) { not_built("copy_2d"); }
void synchronize(void*) {}
void* record_fence() { not_built("record_fence"); }
void release_fence(void*) {}
void copy_bytes_after(void*, const void*, size_t, void*) { not_built("copy_bytes_after"); }
int64_t free_bytes() { not_built("free_bytes"); }
int64_t pool_peak_bytes() { return 0; }
void reset_pool_peak() {}
}  // namespace cuda

}  // namespace longctx
