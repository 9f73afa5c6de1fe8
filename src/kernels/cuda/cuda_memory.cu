#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_memory.h"

namespace longctx::cuda {

namespace {

cudaMemPool_t default_pool() {
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "get device");
  cudaMemPool_t pool = nullptr;
  cuda_check(cudaDeviceGetDefaultMemPool(&pool, dev), "default memory pool");
  return pool;
}

// Device tier: cudaMallocAsync on the default stream from the default pool, which keeps freed
// memory for reuse (release threshold: everything), so per-op workspace costs no cudaMalloc.
class DeviceAllocator : public Allocator {
 public:
  DeviceAllocator() {
    uint64_t keep = UINT64_MAX;
    cuda_check(cudaMemPoolSetAttribute(default_pool(), cudaMemPoolAttrReleaseThreshold, &keep),
               "memory pool threshold");
  }
  void* raw_alloc(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t e = cudaMallocAsync(&p, std::max<size_t>(bytes, 1), nullptr);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it: the caller may recover (a smaller plan)
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      FAIL("GPU allocation of ", bytes, " bytes failed (", cudaGetErrorString(e), "; ", free_b,
           " bytes free of ", total_b, ")");
    }
    return p;
  }
  void raw_free(void* p, size_t) override { cudaFreeAsync(p, nullptr); }
  void zero(void* p, size_t bytes) override { cuda_check(cudaMemsetAsync(p, 0, bytes, nullptr), "memset"); }
  bool host_accessible() const override { return false; }
  void copy(void* dst, const void* src, size_t n) override { copy_bytes(dst, src, n, nullptr); }
};

// Host tier: page-locked, so the GPU copies from it at full speed (and, later, asynchronously).
class PinnedAllocator : public Allocator {
 public:
  void* raw_alloc(size_t bytes) override {
    void* p = nullptr;
    cuda_check(cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault), "pinned host allocation");
    return p;
  }
  void raw_free(void* p, size_t) override { cudaFreeHost(p); }
};

}  // namespace

std::unique_ptr<Allocator> make_device_allocator() { return std::make_unique<DeviceAllocator>(); }
std::unique_ptr<Allocator> make_pinned_allocator() { return std::make_unique<PinnedAllocator>(); }

void copy_bytes(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0 || dst == src) return;
  cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, as_stream(stream)), "copy");
  cuda_check(cudaStreamSynchronize(as_stream(stream)), "copy sync");
}

int64_t free_bytes() {
  size_t f = 0, t = 0;
  cuda_check(cudaMemGetInfo(&f, &t), "memory info");
  return int64_t(f);
}

void copy_device(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0 || dst == src) return;
  cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)), "device copy");
}

void copy_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows,
             bool on_device, void* stream) {
  if (width == 0 || rows == 0) return;
  cuda_check(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows,
                               on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDefault, as_stream(stream)),
             "2-D copy");
  if (!on_device) cuda_check(cudaStreamSynchronize(as_stream(stream)), "2-D copy sync");
}

void synchronize(void* stream) { cuda_check(cudaStreamSynchronize(as_stream(stream)), "stream sync"); }

int64_t pool_peak_bytes() {
  uint64_t v = 0;
  cuda_check(cudaMemPoolGetAttribute(default_pool(), cudaMemPoolAttrReservedMemHigh, &v), "pool peak");
  return int64_t(v);
}

void reset_pool_peak() {
  uint64_t zero = 0;
  cuda_check(cudaMemPoolSetAttribute(default_pool(), cudaMemPoolAttrReservedMemHigh, &zero),
             "pool peak reset");
}

}  // namespace longctx::cuda
