#include <cstdlib>
#include <string>

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

// The calling thread computes and copies on GPU `dev` (cudaSetDevice holds per thread: a copy thread
// starts on GPU 0 whatever its process selected).
void bind(int dev) {
  thread_local int bound = -1;
  if (bound == dev) return;
  cuda_check(cudaSetDevice(dev), "set device");
  bound = dev;
}

// Device tier: cudaMallocAsync on the default stream from the default pool, which keeps freed
// memory for reuse (release threshold: everything), so per-op workspace costs no cudaMalloc.
// It works on the GPU that was current when it was made, from any thread.
class DeviceAllocator : public Allocator {
 public:
  DeviceAllocator() {
    cuda_check(cudaGetDevice(&dev_), "get device");
    uint64_t keep = UINT64_MAX;
    cuda_check(cudaMemPoolSetAttribute(default_pool(), cudaMemPoolAttrReleaseThreshold, &keep),
               "memory pool threshold");
  }
  void* raw_alloc(size_t bytes) override {
    bind(dev_);
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
  void raw_free(void* p, size_t) override {
    bind(dev_);
    cudaFreeAsync(p, nullptr);
  }
  void zero(void* p, size_t bytes) override {
    bind(dev_);
    cuda_check(cudaMemsetAsync(p, 0, bytes, nullptr), "memset");
  }
  bool host_accessible() const override { return false; }
  void copy(void* dst, const void* src, size_t n) override {
    bind(dev_);
    copy_bytes(dst, src, n, nullptr);
  }
  void* fence() override {
    bind(dev_);
    return record_fence();
  }
  void release_fence(void* f) override {
    bind(dev_);
    cuda::release_fence(f);
  }
  void copy_after(void* dst, const void* src, size_t n, void* f) override {
    bind(dev_);
    copy_bytes_after(dst, src, n, f);
  }

 private:
  int dev_ = 0;
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
  const cudaMemcpyKind kind = on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDefault;
  constexpr size_t kMaxPitch = (size_t(1) << 31) - 1;       // what cudaMemcpy2D takes (cudaDevAttrMaxPitch)
  if (rows == 1 || (dpitch == width && spitch == width)) {  // contiguous: one copy
    cuda_check(cudaMemcpyAsync(dst, src, width * rows, kind, as_stream(stream)), "copy");
  } else if (dpitch <= kMaxPitch && spitch <= kMaxPitch) {
    cuda_check(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, kind, as_stream(stream)), "2-D copy");
  } else {  // pitches past its limit (long sequences, few rows): a copy per row
    for (size_t i = 0; i < rows; i++)
      cuda_check(cudaMemcpyAsync(static_cast<char*>(dst) + i * dpitch,
                                 static_cast<const char*>(src) + i * spitch, width, kind, as_stream(stream)),
                 "row copy");
  }
  if (!on_device) cuda_check(cudaStreamSynchronize(as_stream(stream)), "2-D copy sync");
}

void* record_fence() {
  cudaEvent_t e = nullptr;
  cuda_check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event create");
  cuda_check(cudaEventRecord(e, nullptr), "event record");
  return e;
}

void release_fence(void* fence) {
  if (fence) cudaEventDestroy(static_cast<cudaEvent_t>(fence));  // (freed once the event completes)
}

namespace {
struct ThreadStream {  // a thread's own stream, made on its first copy
  cudaStream_t s = nullptr;
  ~ThreadStream() {
    if (s) cudaStreamDestroy(s);
  }
};
bool copy_stream_on() {
  static const bool on = [] {
    const char* v = std::getenv("LONGCTX_COPY_STREAM");
    return !v || std::string(v) != "0";
  }();
  return on;
}
}  // namespace

void copy_bytes_after(void* dst, const void* src, size_t bytes, void* fence) {
  if (bytes == 0 || dst == src) return;
  if (!copy_stream_on()) return copy_bytes(dst, src, bytes, nullptr);
  thread_local ThreadStream ts;
  if (!ts.s) cuda_check(cudaStreamCreateWithFlags(&ts.s, cudaStreamNonBlocking), "copy stream create");
  // a non-blocking stream does not wait for the default one: the fence says what compute must be done
  if (fence) cuda_check(cudaStreamWaitEvent(ts.s, static_cast<cudaEvent_t>(fence), 0), "copy stream wait");
  cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, ts.s), "copy");
  cuda_check(cudaStreamSynchronize(ts.s), "copy sync");
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
