// Op boundary for flash attention: every shape and dtype is checked here with
// messages that name the tensor and both shapes, then the backend kernel runs.
#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <tuple>
#include <vector>

#include "core/memory.h"
#include "kernels/cpu/attention.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/cudnn/attention_cudnn.h"

namespace longctx {
namespace {

// A tensor with no elements may have a null pointer (e.g. no keys at all).
void expect_f32(const char* op, const char* name, const Tensor& t) {
  CHECK(t.defined() || (t.ndim() > 0 && t.numel() == 0), "[", op, "] ", name, " is missing");
  CHECK(t.dtype == DType::F32, "[", op, "] ", name, " is ", dtype_name(t.dtype), ", expected F32");
}

void expect_like(const char* op, const char* name, const Tensor& t, const char* ref_name, const Tensor& ref) {
  expect_f32(op, name, t);
  CHECK(t.shape == ref.shape, "[", op, "] ", name, " has shape ", t.shape.str(), " but ", ref_name, " has ",
        ref.shape.str(), "; they must match");
}

// Checks q, k, v (and the document ids) against each other; returns the sizes.
cpu::AttentionDims check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionParams& p) {
  expect_f32(op, "q", q);
  CHECK(q.ndim() == 4, "[", op, "] q has shape ", q.shape.str(), ", expected 4 dims (B, Tq, NH, HS)");
  cpu::AttentionDims d;
  d.B = q.dim(0), d.Tq = q.dim(1), d.NH = q.dim(2), d.HS = q.dim(3);
  CHECK(d.NH > 0 && d.HS > 0, "[", op, "] q has shape ", q.shape.str(), ": NH and HS must be positive");
  expect_f32(op, "k", k);
  const bool k_ok =
      k.ndim() == 4 && k.dim(0) == d.B && k.dim(3) == d.HS && k.dim(2) > 0 && d.NH % k.dim(2) == 0;
  CHECK(k_ok, "[", op, "] k has shape ", k.shape.str(), " but q ", q.shape.str(), " needs (B=", d.B,
        ", *, NKV, HS=", d.HS, ") with NH=", d.NH, " divisible by NKV");
  d.Tk = k.dim(1), d.NKV = k.dim(2);
  expect_like(op, "v", v, "k", k);
  CHECK(p.q_doc.defined() == p.k_doc.defined(), "[", op, "] q_doc and k_doc must be given together (q_doc ",
        p.q_doc.defined() ? p.q_doc.shape.str() : "missing", ", k_doc ",
        p.k_doc.defined() ? p.k_doc.shape.str() : "missing", ")");
  if (p.q_doc.defined()) {
    CHECK(p.q_doc.dtype == DType::I32 && p.k_doc.dtype == DType::I32, "[", op,
          "] q_doc and k_doc must be I32, got ", dtype_name(p.q_doc.dtype), " and ",
          dtype_name(p.k_doc.dtype));
    CHECK(p.q_doc.shape == Shape({d.B, d.Tq}), "[", op, "] q_doc has shape ", p.q_doc.shape.str(), " but q ",
          q.shape.str(), " needs (B, Tq) = ", Shape({d.B, d.Tq}).str());
    CHECK(p.k_doc.shape == Shape({d.B, d.Tk}), "[", op, "] k_doc has shape ", p.k_doc.shape.str(), " but k ",
          k.shape.str(), " needs (B, Tk) = ", Shape({d.B, d.Tk}).str());
  }
  CHECK(std::isfinite(p.scale), "[", op, "] scale ", p.scale, " is not finite");
  CHECK(p.window >= 0, "[", op, "] window ", p.window, " must be >= 0");
  return d;
}

void expect_lse(const char* op, const Tensor& lse, const cpu::AttentionDims& d) {
  expect_f32(op, "lse", lse);
  const Shape want{d.B, d.NH, d.Tq};
  CHECK(lse.shape == want, "[", op, "] lse has shape ", lse.shape.str(),
        " but q needs (B, NH, Tq) = ", want.str());
}

bool on_cuda(const Context& ctx) { return ctx.backend == Backend::cuda; }

// bf16 math on the GPU: cuDNN's fused attention wherever it can express the mask (no documents; causal
// aligned bottom-right, q_offset == Tk - Tq, which covers whole sequences and the last chunk of a cache);
// the rest (documents, other offsets) runs our own fp32 kernels.
// Decoding (a few query rows against a growing cache) stays on our kernels too: cuDNN builds a graph per
// shape, and the cache's length changes every token.
constexpr int64_t kCudnnMinRows = 64;

// Shapes cuDNN refused once (no engine, a limit): they run our kernels from then on.
std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>>& cudnn_refused() {
  static std::set<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool>> s;
  return s;
}
auto cudnn_key(const cpu::AttentionDims& d, bool causal) {
  return std::make_tuple(d.B, d.Tq, d.Tk, d.NH, d.NKV, d.HS, causal);
}

bool use_cudnn(const Context& ctx, const cpu::AttentionDims& d, const AttentionParams& p) {
  return on_cuda(ctx) && ctx.math == DType::BF16 && cuda::cudnn_attention_built() && !p.q_doc.defined() &&
         p.window == 0 && d.B > 0 && d.Tq >= kCudnnMinRows && d.Tq <= d.Tk &&
         (!p.causal || p.q_offset == d.Tk - d.Tq) && d.HS % 8 == 0 && d.HS <= 256 &&
         !cudnn_refused().count(cudnn_key(d, p.causal));
}

// Runs f (a cuDNN call); when cuDNN refuses the shape, remembers it and returns false (the caller then runs
// our own kernels), saying so once on stderr.
int64_t g_cudnn_runs = 0;

template <class F>
bool try_cudnn(const cpu::AttentionDims& d, bool causal, F&& f) {
  try {
    f();
    g_cudnn_runs++;
    return true;
  } catch (const Error& e) {
    cudnn_refused().insert(cudnn_key(d, causal));
    std::fprintf(stderr,
                 "longctx: cuDNN attention refused B=%lld Tq=%lld Tk=%lld NH=%lld NKV=%lld HS=%lld (%s); "
                 "our own kernels run this shape\n",
                 (long long)d.B, (long long)d.Tq, (long long)d.Tk, (long long)d.NH, (long long)d.NKV,
                 (long long)d.HS, e.what());
    return false;
  }
}

// Device scratch cut into bf16 tensors (each a multiple of 16 bytes, as cuDNN wants: HS % 8 == 0) and
// cuDNN's own workspace after them.
struct Bf16Scratch {
  Buffer buf;
  std::vector<void*> parts;
  void* workspace = nullptr;
  Bf16Scratch(Memory& mem, const std::vector<int64_t>& elems, size_t ws_bytes) {
    int64_t total = 0;
    for (int64_t e : elems) total += e;
    buf = Buffer(mem, Tier::device, Tag::workspace, {total + int64_t(ws_bytes + 1) / 2}, DType::BF16);
    char* p = static_cast<char*>(buf.t().ptr);
    for (int64_t e : elems) parts.push_back(p), p += e * 2;
    workspace = ws_bytes ? p : nullptr;
  }
};

cuda::SdpaDims sdpa_dims(const cpu::AttentionDims& d) { return {d.B, d.Tq, d.Tk, d.NH, d.NKV, d.HS}; }

cpu::AttentionMask mask_of(const AttentionParams& p) {
  cpu::AttentionMask m;
  m.q_offset = p.q_offset;
  m.causal = p.causal;
  m.window = p.window;
  if (p.q_doc.defined()) m.q_doc = p.q_doc.i32(), m.k_doc = p.k_doc.i32();
  return m;
}

float scale_of(const AttentionParams& p, int64_t HS) {
  return p.scale != 0.f ? p.scale : float(1.0 / std::sqrt(double(HS)));
}

}  // namespace

void attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, const AttentionParams& p,
                       Context& ctx) {
  const char* op = "attention";
  const cpu::AttentionDims d = check_qkv(op, q, k, v, p);
  expect_like(op, "out", out, "q", q);
  expect_lse(op, lse, d);
  if (use_cudnn(ctx, d, p) && try_cudnn(d, p.causal, [&] {
        const int64_t nq = q.numel(), nk = k.numel();
        const cuda::SdpaDims sd = sdpa_dims(d);
        Bf16Scratch s(*ctx.mem, {nq, nq, nk, nk}, cuda::cudnn_attention_workspace_bytes(sd, p.causal, false));
        void *qb = s.parts[0], *ob = s.parts[1], *kb = s.parts[2], *vb = s.parts[3];
        cuda::to_bf16(qb, q.f32(), nq, ctx.stream);
        cuda::to_bf16(kb, k.f32(), nk, ctx.stream);
        cuda::to_bf16(vb, v.f32(), nk, ctx.stream);
        cuda::cudnn_attention_forward(ob, lse.f32(), qb, kb, vb, sd, p.causal, scale_of(p, d.HS), s.workspace,
                                      ctx.stream);
        cuda::from_bf16(out.f32(), ob, nq, ctx.stream);
      }))
    return;
  if (on_cuda(ctx))
    return cuda::attention_forward(out.f32(), lse.f32(), q.f32(), k.f32(), v.f32(), d, mask_of(p),
                                   scale_of(p, d.HS), ctx.stream);
  cpu::attention_forward(out.f32(), lse.f32(), q.f32(), k.f32(), v.f32(), d, mask_of(p), scale_of(p, d.HS));
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                        Tensor out, Tensor lse, const AttentionParams& p, Context& ctx) {
  const char* op = "attention";
  const cpu::AttentionDims d = check_qkv(op, q, k, v, p);
  expect_like(op, "dq", dq, "q", q);
  expect_like(op, "dk", dk, "k", k);
  expect_like(op, "dv", dv, "v", v);
  expect_like(op, "dout", dout, "q", q);
  expect_like(op, "out", out, "q", q);
  expect_lse(op, lse, d);
  CHECK(ctx.mem, "[", op, "] ctx.mem is null; the backward takes its workspace from it");
  if (use_cudnn(ctx, d, p) && try_cudnn(d, p.causal, [&] {
        const int64_t nq = q.numel(), nk = k.numel();
        const cuda::SdpaDims sd = sdpa_dims(d);
        Bf16Scratch s(*ctx.mem, {nq, nq, nq, nq, nk, nk, nk, nk},
                      cuda::cudnn_attention_workspace_bytes(sd, p.causal, true, ctx.deterministic));
        void *qb = s.parts[0], *ob = s.parts[1], *dob = s.parts[2], *dqb = s.parts[3];
        void *kb = s.parts[4], *vb = s.parts[5], *dkb = s.parts[6], *dvb = s.parts[7];
        cuda::to_bf16(qb, q.f32(), nq, ctx.stream);
        cuda::to_bf16(ob, out.f32(), nq,
                      ctx.stream);  // the forward's bf16 output, exactly (it came from bf16)
        cuda::to_bf16(dob, dout.f32(), nq, ctx.stream);
        cuda::to_bf16(kb, k.f32(), nk, ctx.stream);
        cuda::to_bf16(vb, v.f32(), nk, ctx.stream);
        cuda::cudnn_attention_backward(dqb, dkb, dvb, dob, qb, kb, vb, ob, lse.f32(), sd, p.causal,
                                       scale_of(p, d.HS), ctx.deterministic, s.workspace, ctx.stream);
        cuda::from_bf16(dq.f32(), dqb, nq, ctx.stream);
        cuda::from_bf16(dk.f32(), dkb, nk, ctx.stream);
        cuda::from_bf16(dv.f32(), dvb, nk, ctx.stream);
      }))
    return;
  // the same scratch on both backends (the GPU kernels need less), so plan's prediction holds on either
  const int64_t ws_floats =
      int64_t(std::max(cpu::attention_backward_workspace_floats(d),
                       on_cuda(ctx) ? cuda::attention_backward_workspace_floats(d) : 0));
  Buffer ws(*ctx.mem, Tier::device, Tag::workspace, {std::max<int64_t>(ws_floats, 1)});  // (2, B, NH, Tq)
  if (on_cuda(ctx))
    return cuda::attention_backward(dq.f32(), dk.f32(), dv.f32(), dout.f32(), q.f32(), k.f32(), v.f32(),
                                    out.f32(), lse.f32(), ws.f32(), d, mask_of(p), scale_of(p, d.HS),
                                    ctx.stream);
  cpu::attention_backward(dq.f32(), dk.f32(), dv.f32(), dout.f32(), q.f32(), k.f32(), v.f32(), out.f32(),
                          lse.f32(), ws.f32(), d, mask_of(p), scale_of(p, d.HS));
}

void attention_merge(Tensor out, Tensor lse, Tensor part_out, Tensor part_lse, Context& ctx) {
  const char* op = "attention_merge";
  expect_f32(op, "out", out);
  CHECK(out.ndim() == 4, "[", op, "] out has shape ", out.shape.str(), ", expected (B, Tq, NH, HS)");
  expect_like(op, "part_out", part_out, "out", out);
  const int64_t B = out.dim(0), Tq = out.dim(1), NH = out.dim(2), HS = out.dim(3);
  cpu::AttentionDims d;
  d.B = B, d.Tq = Tq, d.NH = NH;
  expect_lse(op, lse, d);
  expect_lse(op, part_lse, d);
  if (on_cuda(ctx))
    return cuda::attention_merge(out.f32(), lse.f32(), part_out.f32(), part_lse.f32(), B, Tq, NH, HS,
                                 ctx.stream);
  float *o = out.f32(), *l = lse.f32();
  const float *po = part_out.f32(), *pl = part_lse.f32();
#pragma omp parallel for collapse(2) schedule(static) if (B * NH * Tq * HS > (1 << 16))
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < Tq; t++) {
        const int64_t li = (b * NH + h) * Tq + t;
        const float x = l[li], y = pl[li], m = std::max(x, y);
        if (m == -INFINITY) continue;  // neither part sees a key
        const float wx = std::exp(x - m), wy = std::exp(y - m), s = wx + wy;
        float* r = o + ((b * Tq + t) * NH + h) * HS;
        const float* p = po + ((b * Tq + t) * NH + h) * HS;
        for (int64_t e = 0; e < HS; e++) r[e] = (r[e] * wx + p[e] * wy) / s;
        l[li] = m + std::log(s);
      }
}

// The backward takes its per-row statistics (base-2 lse and rowsum(dO * O),
// O(T)) from ctx.mem; tiles come from small per-thread blocks of the kernel's
// own (O(tile) each), and the forward takes nothing.
int64_t attention_cudnn_runs() { return g_cudnn_runs; }

size_t attention_workspace_bytes(int64_t B, int64_t Tq, int64_t Tk, int64_t NH, int64_t NKV, int64_t HS) {
  cpu::AttentionDims d;
  d.B = B, d.Tq = Tq, d.Tk = Tk, d.NH = NH, d.NKV = NKV, d.HS = HS;
  return std::max<size_t>(cpu::attention_backward_workspace_floats(d), 1) * sizeof(float);
}

}  // namespace longctx
