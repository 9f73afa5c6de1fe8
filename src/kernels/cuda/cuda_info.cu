// CUDA device discovery for `longctx info`.
#include <cuda_runtime.h>

#include "core/check.h"
#include "kernels/cuda/cuda_info.h"

namespace longctx {

bool cuda_built() { return true; }

std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none) {
  std::vector<CudaDeviceInfo> out;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why_none) *why_none = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    return out;
  }
  for (int i = 0; i < n; i++) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out.push_back({p.name, p.major, p.minor, int64_t(p.totalGlobalMem), p.multiProcessorCount});
  }
  if (out.empty() && why_none) *why_none = "no CUDA devices";
  return out;
}

namespace {
void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) FAIL("CUDA ", what, " failed: ", cudaGetErrorString(e));
}
}  // namespace

void cuda_select_device(int index) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) FAIL("no CUDA device to select");
  const cudaError_t e = cudaSetDevice(index % n);
  if (e != cudaSuccess) FAIL("cudaSetDevice(", index % n, ") failed: ", cudaGetErrorString(e));
}

std::string cuda_device_pci_id() {
  int dev = 0;
  char id[64] = {0};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetPCIBusId(id, sizeof id, dev) != cudaSuccess)
    return "";
  return id;
}

void* cuda_malloc(size_t bytes) {
  void* p = nullptr;
  cuda_ok(cudaMalloc(&p, bytes), "malloc");
  return p;
}
void cuda_free(void* p) { cudaFree(p); }
void cuda_to_device(void* dst, const void* src, size_t bytes) {
  cuda_ok(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to device");
}
void cuda_to_host(void* dst, const void* src, size_t bytes) {
  cuda_ok(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host");
}

}  // namespace longctx
