// GPU memory for the CUDA backend: the device tier's allocator (stream-ordered,
// cached by CUDA's default memory pool, so freeing and reallocating per op is
// cheap), pinned host memory for the host tier, copies in any direction and
// the pool's own high-water mark. Stubs throw when CUDA is not built.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/memory.h"

namespace longctx::cuda {

std::unique_ptr<Allocator> make_device_allocator();
std::unique_ptr<Allocator> make_pinned_allocator();
// Any direction (device, pinned or pageable host); returns when the bytes are there.
void copy_bytes(void* dst, const void* src, size_t bytes, void* stream);
// Device to device, in stream order (returns at once: no host code waits on these bytes).
void copy_device(void* dst, const void* src, size_t bytes, void* stream);
// `rows` blocks of `width` bytes, each `dpitch` / `spitch` bytes after the last (cudaMemcpy2D): in stream
// order when both sides are device memory (on_device), else it returns when the bytes are there.
void copy_2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows,
             bool on_device, void* stream);
void synchronize(void* stream);
// An event recorded on the default stream (the compute enqueued so far), and its release.
void* record_fence();
void release_fence(void* fence);
// A copy on the calling thread's own non-blocking stream after `fence` (null: none), so that a copy thread's
// copies run while the compute goes on; returns when the bytes are there. LONGCTX_COPY_STREAM=0 puts them
// on the default stream instead (behind the compute, as before: for diagnosis).
void copy_bytes_after(void* dst, const void* src, size_t bytes, void* fence);
int64_t free_bytes();  // the GPU's free memory now (cudaMemGetInfo)
// Bytes the device pool held at most since the last reset (what the GPU really gave us,
// fragmentation included) and a reset of that mark.
int64_t pool_peak_bytes();
void reset_pool_peak();

}  // namespace longctx::cuda
