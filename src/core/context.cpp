#include "core/context.h"

namespace longctx {

const char* backend_name(Backend b) { return b == Backend::cuda ? "cuda" : "cpu"; }

namespace {
void check_host(const Tensor& t, const Context& ctx, const char* who) {
  CHECK(!t.defined() || !ctx.mem || ctx.mem->host_accessible(t.tier), "[", who,
        "] host code asked for the bytes of a ", t.shape.str(),
        " tensor in GPU memory; copy it with copy_tensor");
}
}  // namespace

float* host_f32(const Tensor& t, const Context& ctx, const char* who) {
  check_host(t, ctx, who);
  return t.f32();
}
int32_t* host_i32(const Tensor& t, const Context& ctx, const char* who) {
  check_host(t, ctx, who);
  return t.i32();
}

}  // namespace longctx
