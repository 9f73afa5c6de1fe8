// Op boundary for the small ops: validate, then dispatch to the backend.
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"
#include "ops/adamw.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "ops/validate.h"

namespace longctx {
using ops::bf16_math;
using ops::expect;
using ops::expect_ndim;
using ops::host_readable;
using ops::on_cuda;

void embedding_forward(Tensor out, Tensor tokens, Tensor wte, Context& ctx) {
  expect_ndim("embedding", "wte", wte, 2);
  expect_ndim("embedding", "tokens", tokens, 1);
  const int64_t N = tokens.dim(0), V = wte.dim(0), C = wte.dim(1);
  expect("embedding", "tokens", tokens, {N}, DType::I32);
  expect("embedding", "out", out, {N, C});
  if (host_readable(tokens, ctx)) {  // on the GPU: refused where the ids were read (a zero row otherwise)
    const int32_t* tok = tokens.i32();
    for (int64_t n = 0; n < N; n++)
      CHECK(tok[n] >= 0 && tok[n] < V, "[embedding] token id ", tok[n], " at position ", n,
            " is outside the vocabulary [0, ", V, ")");
  }
  if (on_cuda(ctx)) return cuda::embedding_forward(out.f32(), tokens.i32(), wte.f32(), N, C, V, ctx.stream);
  cpu::embedding_forward(out.f32(), tokens.i32(), wte.f32(), N, C);
}

void embedding_backward(Tensor dwte, Tensor dout, Tensor tokens, Context& ctx) {
  expect_ndim("embedding_backward", "dwte", dwte, 2);
  const int64_t N = tokens.dim(0), C = dwte.dim(1);
  expect("embedding_backward", "tokens", tokens, {N}, DType::I32);
  expect("embedding_backward", "dout", dout, {N, C});
  if (on_cuda(ctx))
    return cuda::embedding_backward(dwte.f32(), dout.f32(), tokens.i32(), N, C, dwte.dim(0), ctx.stream);
  cpu::embedding_backward(dwte.f32(), dout.f32(), tokens.i32(), N, C);
}

void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor weight, float eps, Context& ctx) {
  expect_ndim("rmsnorm", "inp", inp, 2);
  const int64_t N = inp.dim(0), C = inp.dim(1);
  expect("rmsnorm", "weight", weight, {C});
  expect("rmsnorm", "out", out, {N, C});
  expect("rmsnorm", "rstd", rstd, {N});
  if (on_cuda(ctx))
    return cuda::rmsnorm_forward(out.f32(), rstd.f32(), inp.f32(), weight.f32(), N, C, eps, ctx.stream);
  cpu::rmsnorm_forward(out.f32(), rstd.f32(), inp.f32(), weight.f32(), N, C, eps);
}

void rmsnorm_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Tensor rstd,
                      Context& ctx, bool accumulate) {
  expect_ndim("rmsnorm_backward", "inp", inp, 2);
  const int64_t N = inp.dim(0), C = inp.dim(1);
  expect("rmsnorm_backward", "dinp", dinp, {N, C});
  expect("rmsnorm_backward", "dout", dout, {N, C});
  expect("rmsnorm_backward", "weight", weight, {C});
  expect("rmsnorm_backward", "rstd", rstd, {N});
  if (dweight.defined()) expect("rmsnorm_backward", "dweight", dweight, {C});
  float* dw = dweight.defined() ? dweight.f32() : nullptr;
  if (on_cuda(ctx))
    return cuda::rmsnorm_backward(dinp.f32(), dw, dout.f32(), inp.f32(), weight.f32(), rstd.f32(), N, C,
                                  accumulate, ctx.stream);
  cpu::rmsnorm_backward(dinp.f32(), dw, dout.f32(), inp.f32(), weight.f32(), rstd.f32(), N, C, accumulate);
}

void matmul_forward(Tensor out, Tensor inp, Tensor weight, Context& ctx, bool accumulate) {
  expect_ndim("matmul", "inp", inp, 2);
  expect_ndim("matmul", "weight", weight, 2);
  const int64_t N = inp.dim(0), IC = inp.dim(1), OC = weight.dim(0);
  expect("matmul", "weight", weight, {OC, IC});
  expect("matmul", "out", out, {N, OC});
  if (on_cuda(ctx))
    return cuda::matmul_forward(out.f32(), inp.f32(), weight.f32(), N, IC, OC, accumulate, bf16_math(ctx),
                                ctx.stream);
  cpu::matmul_forward(out.f32(), inp.f32(), weight.f32(), N, IC, OC, accumulate);
}

void matmul_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, Context& ctx,
                     bool accumulate) {
  expect_ndim("matmul_backward", "inp", inp, 2);
  expect_ndim("matmul_backward", "weight", weight, 2);
  const int64_t N = inp.dim(0), IC = inp.dim(1), OC = weight.dim(0);
  expect("matmul_backward", "weight", weight, {OC, IC});
  expect("matmul_backward", "dout", dout, {N, OC});
  if (dinp.defined()) expect("matmul_backward", "dinp", dinp, {N, IC});
  if (dweight.defined()) expect("matmul_backward", "dweight", dweight, {OC, IC});
  float* di = dinp.defined() ? dinp.f32() : nullptr;
  float* dw = dweight.defined() ? dweight.f32() : nullptr;
  if (on_cuda(ctx))
    return cuda::matmul_backward(di, dw, dout.f32(), inp.f32(), weight.f32(), N, IC, OC, accumulate,
                                 bf16_math(ctx), ctx.stream);
  cpu::matmul_backward(di, dw, dout.f32(), inp.f32(), weight.f32(), N, IC, OC, accumulate);
}

static void rope_check(const char* op, Tensor out, Tensor inp, Tensor pos, Tensor cos, Tensor sin,
                       const Context& ctx) {
  expect_ndim(op, "inp", inp, 3);
  const int64_t N = inp.dim(0), H = inp.dim(1), HS = inp.dim(2);
  CHECK(HS % 2 == 0, "[", op, "] head size ", HS, " must be even");
  expect(op, "out", out, inp.shape);
  expect(op, "pos", pos, {N}, DType::I32);
  expect_ndim(op, "cos", cos, 2);
  expect(op, "cos", cos, {cos.dim(0), HS / 2});
  expect(op, "sin", sin, cos.shape);
  if (host_readable(pos, ctx)) {  // on the GPU the rows come from GradStep, which builds them in range
    const int32_t* p = pos.i32();
    for (int64_t n = 0; n < N; n++)
      CHECK(p[n] >= 0 && p[n] < cos.dim(0), "[", op, "] position ", p[n], " is outside the rope table of ",
            cos.dim(0), " positions");
  }
  (void)H;
}

void rope_forward(Tensor out, Tensor inp, Tensor pos, Tensor cos, Tensor sin, Context& ctx) {
  rope_check("rope", out, inp, pos, cos, sin, ctx);
  if (on_cuda(ctx))
    return cuda::rope_apply(out.f32(), inp.f32(), pos.i32(), cos.f32(), sin.f32(), inp.dim(0), inp.dim(1),
                            inp.dim(2), 1.f, ctx.stream);
  cpu::rope_apply(out.f32(), inp.f32(), pos.i32(), cos.f32(), sin.f32(), inp.dim(0), inp.dim(1), inp.dim(2),
                  1.f);
}

void rope_backward(Tensor dinp, Tensor dout, Tensor pos, Tensor cos, Tensor sin, Context& ctx) {
  rope_check("rope_backward", dinp, dout, pos, cos, sin, ctx);
  if (on_cuda(ctx))
    return cuda::rope_apply(dinp.f32(), dout.f32(), pos.i32(), cos.f32(), sin.f32(), dout.dim(0), dout.dim(1),
                            dout.dim(2), -1.f, ctx.stream);
  cpu::rope_apply(dinp.f32(), dout.f32(), pos.i32(), cos.f32(), sin.f32(), dout.dim(0), dout.dim(1),
                  dout.dim(2), -1.f);
}

void swiglu_forward(Tensor out, Tensor gate, Tensor up, Context& ctx) {
  expect("swiglu", "up", up, gate.shape);
  expect("swiglu", "out", out, gate.shape);
  if (on_cuda(ctx)) return cuda::swiglu_forward(out.f32(), gate.f32(), up.f32(), gate.numel(), ctx.stream);
  cpu::swiglu_forward(out.f32(), gate.f32(), up.f32(), gate.numel());
}

void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up, Context& ctx) {
  for (auto [n, t] : {std::pair{"up", up}, {"dout", dout}, {"dgate", dgate}, {"dup", dup}})
    expect("swiglu_backward", n, t, gate.shape);
  if (on_cuda(ctx))
    return cuda::swiglu_backward(dgate.f32(), dup.f32(), dout.f32(), gate.f32(), up.f32(), gate.numel(),
                                 ctx.stream);
  cpu::swiglu_backward(dgate.f32(), dup.f32(), dout.f32(), gate.f32(), up.f32(), gate.numel());
}

void adamw_update(Tensor param, Tensor grad, Tensor m, Tensor v, const AdamWParams& p, Context& ctx) {
  for (auto [n, t] : {std::pair{"grad", grad}, {"m", m}, {"v", v}}) expect("adamw", n, t, param.shape);
  CHECK(p.step >= 1, "[adamw] step must be >= 1, got ", p.step);
  if (on_cuda(ctx))
    return cuda::adamw_update(param.f32(), grad.f32(), m.f32(), v.f32(), param.numel(), p.lr, p.beta1,
                              p.beta2, p.eps, p.weight_decay, p.step, ctx.stream);
  cpu::adamw_update(param.f32(), grad.f32(), m.f32(), v.f32(), param.numel(), p.lr, p.beta1, p.beta2, p.eps,
                    p.weight_decay, p.step);
}

void add_forward(Tensor out, Tensor a, Tensor b, Context& ctx) {
  expect("add", "b", b, a.shape);
  expect("add", "out", out, a.shape);
  if (on_cuda(ctx)) return cuda::add(out.f32(), a.f32(), b.f32(), a.numel(), ctx.stream);
  cpu::add(out.f32(), a.f32(), b.f32(), a.numel());
}

double sum_squares(Tensor x, Context& ctx) {
  if (on_cuda(ctx)) return cuda::sum_squares(x.f32(), x.numel(), ctx.stream);
  return cpu::sum_squares(x.f32(), x.numel());
}

void scale_inplace(Tensor x, float s, Context& ctx) {
  if (on_cuda(ctx)) return cuda::scale(x.f32(), s, x.numel(), ctx.stream);
  cpu::scale(x.f32(), s, x.numel());
}

void axpy_inplace(Tensor y, float a, Tensor x, Context& ctx) {
  expect("axpy", "x", x, y.shape);
  if (on_cuda(ctx)) return cuda::axpy(y.f32(), a, x.f32(), y.numel(), ctx.stream);
  float* py = y.f32();
  const float* px = x.f32();
  for (int64_t i = 0; i < y.numel(); i++) py[i] += a * px[i];
}

void fill_inplace(Tensor x, float value, Context& ctx) {
  expect("fill", "x", x, x.shape);
  if (on_cuda(ctx)) return cuda::fill(x.f32(), value, x.numel(), ctx.stream);
  float* p = x.f32();
  for (int64_t i = 0; i < x.numel(); i++) p[i] = value;
}

static void bias_check(const char* op, const Tensor& rows, const Tensor& b) {
  expect_ndim(op, "rows", rows, 2);
  expect(op, "bias", b, {rows.dim(1)});
}

void bias_add_forward(Tensor y, Tensor b, Context& ctx) {
  bias_check("bias_add", y, b);
  if (on_cuda(ctx)) return cuda::bias_add(y.f32(), b.f32(), y.dim(0), y.dim(1), ctx.stream);
  cpu::bias_add(y.f32(), b.f32(), y.dim(0), y.dim(1));
}

void convert_dtype(Tensor dst, Tensor src, Context& ctx) {
  CHECK(dst.numel() == src.numel(), "[convert] ", src.numel(), " elements into ", dst.numel());
  const bool down = src.dtype == DType::F32 && dst.dtype == DType::BF16,
             up = src.dtype == DType::BF16 && dst.dtype == DType::F32;
  CHECK(down || up, "[convert] ", dtype_name(src.dtype), " to ", dtype_name(dst.dtype),
        ": only F32 <-> BF16");
  const int64_t n = src.numel();
  if (on_cuda(ctx))
    return down ? cuda::to_bf16(dst.ptr, src.f32(), n, ctx.stream)
                : cuda::from_bf16(dst.f32(), src.ptr, n, ctx.stream);
  if (down) {
    const float* s = src.f32();
    uint16_t* d = static_cast<uint16_t*>(dst.ptr);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) d[i] = f32_to_bf16(s[i]);
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src.ptr);
    float* d = dst.f32();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) d[i] = bf16_to_f32(s[i]);
  }
}

void bias_add_backward(Tensor db, Tensor dy, Context& ctx) {
  bias_check("bias_add_backward", dy, db);
  if (on_cuda(ctx)) return cuda::bias_grad(db.f32(), dy.f32(), dy.dim(0), dy.dim(1), ctx.stream);
  cpu::bias_grad(db.f32(), dy.f32(), dy.dim(0), dy.dim(1));
}

}  // namespace longctx
