// Host emulation of the CUDA device features the longctx kernels use.
// Each CUDA thread of a block is a cooperative fiber (ucontext) on one OS thread; __syncthreads is a real
// block-wide barrier, warp shuffles a 32-lane barrier (write slot, barrier, read partner, barrier). The
// scheduler picks the next runnable fiber by a policy (round robin, or a fixed priority order that lets one
// thread/warp run as far ahead as the barriers allow), so a missing barrier shows up as a wrong or
// schedule-dependent result. A barrier that can never complete (divergent __syncthreads, shuffle after a
// lane exited) is reported as a deadlock.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

using std::max;
using std::min;

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

namespace emu {
// grid caps substituted into common.cuh's grid_for / grid_rows (shrink them to exercise stride loops)
extern int64_t cap_grid_for, cap_grid_rows;
extern int policy;  // 0 round robin, 1 priority by thread id, 2 reverse, >=3 random priority (seed)
extern int errors;  // emulation errors (deadlocks, bad launches, divergent shuffles ...)
extern long launches;
void launch_impl(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body, const char* name);
template <class F>
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, F&& f, const char* name) {
  launch_impl(grid, block, smem, std::function<void()>(std::forward<F>(f)), name);
}
void syncthreads();
void syncwarp();
uint64_t shfl_xor_bits(uint64_t bits, unsigned mask, int lanemask, int width);
void shared_touch(void* p, size_t bytes);  // first touch in a block: poison with 0xff bytes (NaN)
}  // namespace emu

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lanemask, int width = 32) {
  static_assert(sizeof(T) <= 8);
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  b = emu::shfl_xor_bits(b, mask, lanemask, width);
  T r;
  std::memcpy(&r, &b, sizeof(T));
  return r;
}
#define EMU_SHARED(T, name, N) \
  static T name[N];            \
  ::emu::shared_touch(name, sizeof(name))
