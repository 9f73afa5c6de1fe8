// Context: what every op receives. It names the backend, carries an opaque
// stream for asynchronous backends (null on the CPU) and the process memory.
#pragma once
#include "core/memory.h"
#include "core/tensor.h"

namespace longctx {

enum class Backend : uint8_t { cpu, cuda };

struct Context {
  Backend backend = Backend::cpu;
  void* stream = nullptr;  // cudaStream_t on the CUDA backend
  Memory* mem = nullptr;
};

// The one function that moves bytes between tiers (device/host/disk). It may
// return before the copy is done when `async` is set; `copy_sync` waits for
// every copy issued on the context. Shapes and dtypes must match.
void copy_tensor(const Tensor& dst, const Tensor& src, Context& ctx, bool async = false);
void copy_sync(Context& ctx);

}  // namespace longctx
