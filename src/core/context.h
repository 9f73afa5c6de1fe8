// Context: what every op receives. It names the backend, carries an opaque
// stream for asynchronous backends (null on the CPU) and the process memory.
#pragma once
#include "core/memory.h"
#include "core/tensor.h"

namespace longctx {

enum class Backend : uint8_t { cpu, cuda };
const char* backend_name(Backend b);

struct Context {
  Backend backend = Backend::cpu;
  void* stream = nullptr;  // cudaStream_t on the CUDA backend
  Memory* mem = nullptr;
  // The GPU's arithmetic on fp32 storage: F32 (exact against the CPU, TF32 off) or BF16 (GEMMs on bf16
  // tensor cores with fp32 accumulation, attention through cuDNN in bf16 with fp32 statistics).
  DType math = DType::F32;
  bool deterministic =
      true;  // GPU kernels whose fastest form is not bitwise reproducible take the one that is
};

// The one function that moves bytes between tiers (device/host/disk). It may
// return before the copy is done when `async` is set; `copy_sync` waits for
// every copy issued on the context. Shapes and dtypes must match.
// (Defined in ops/copy.cpp: it dispatches on the backend like every op.)
void copy_tensor(const Tensor& dst, const Tensor& src, Context& ctx, bool async = false);
void copy_sync(Context& ctx);

// Host access to a tensor's bytes, checked: on the CUDA backend the device tier is GPU memory, and
// asking for its bytes from host code throws naming `who` (copy through a host buffer instead).
float* host_f32(const Tensor& t, const Context& ctx, const char* who);
int32_t* host_i32(const Tensor& t, const Context& ctx, const char* who);

}  // namespace longctx
