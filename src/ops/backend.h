// Choosing and setting up the backend a run computes on.
#pragma once
#include <string>

#include "core/context.h"

namespace longctx {

// "cpu", "cuda" or "auto" (cuda when the CUDA backend is built and a GPU is visible, else cpu).
Backend parse_device(const std::string& name);
// ctx.backend := b, ctx.mem := &mem; on cuda the device tier becomes GPU memory and the host tier
// pinned memory. Call before anything is allocated from mem.
void setup_backend(Context& ctx, Memory& mem, Backend b);

}  // namespace longctx
