// Every op on the CUDA backend against the CPU backend (the reference), as
// ggml's test-backend-ops does: the same random inputs through the same op
// API on both, outputs poisoned with NaN before the GPU run (an element the
// kernel never writes fails), guard words around every GPU buffer (a write
// outside fails), fp32 on both sides, relative-norm error under 1e-5.
// Skipped where no CUDA device is visible (the CPU tests cover the rest).
#include <cmath>
#include <cstdio>
#include <memory>

#include "harness.h"
#include "kernels/cuda/cuda_info.h"
#include "kernels/cuda/cudnn/attention_cudnn.h"
#include "ops/adamw.h"
#include "ops/attention.h"
#include "ops/backend.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/lm_head_loss.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace longctx::test {
namespace {

constexpr double kTol = 1e-5;  // fp32 on both backends; only the summation order differs

// ||a - b|| / ||b|| (a NaN anywhere gives NaN, which fails every bound)
double rel_norm_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d, den += double(b[i]) * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Without a GPU each test says SKIP and passes (not GTEST_SKIP: CTest would list them after its summary line,
// which must stay the test command's last line).
struct BackendOps : ::testing::Test {
  Memory cpu_mem, gpu_mem;
  Context cpu, gpu;
  bool no_gpu = false;
  void SetUp() override {
    std::string why;
    no_gpu = !cuda_built() || cuda_devices(&why).empty();
    if (no_gpu) {
      std::printf("SKIP: no CUDA device (%s)\n", why.c_str());
      return;
    }
    setup_backend(cpu, cpu_mem, Backend::cpu);
    setup_backend(gpu, gpu_mem, Backend::cuda);
  }
};
#define SKIP_WITHOUT_GPU() \
  if (no_gpu) return

// One tensor on both backends: host memory for the CPU op, GPU memory with guard words for the
// CUDA op. Inputs start equal on both sides; outputs ("=") start NaN on the GPU.
class Twin {
 public:
  static constexpr size_t kGuard = 64;
  static constexpr uint32_t kPattern = 0x7fc0deadu;
  Twin(Shape s, std::vector<float> init, DType dt = DType::F32) : s_(s), dt_(dt), host_(std::move(init)) {
    const size_t n = size_t(s.numel());
    EXPECT_EQ(host_.size(), n);
    std::vector<uint32_t> staged(n + 2 * kGuard, kPattern);
    std::memcpy(staged.data() + kGuard, host_.data(), n * 4);
    dev_ = static_cast<uint32_t*>(cuda_malloc(staged.size() * 4));
    cuda_to_device(dev_, staged.data(), staged.size() * 4);
  }
  Twin(Shape s, const std::vector<int32_t>& ids) : Twin(s, as_floats(ids), DType::I32) {}
  ~Twin() { cuda_free(dev_); }
  Twin(const Twin&) = delete;
  Twin& operator=(const Twin&) = delete;
  // An output written with "=": the GPU copy starts as NaN
  static std::unique_ptr<Twin> out(Shape s) {
    auto t = std::make_unique<Twin>(s, std::vector<float>(size_t(s.numel()), 0.f));
    const std::vector<float> nan(size_t(s.numel()), std::nanf(""));
    cuda_to_device(t->dev_ + kGuard, nan.data(), nan.size() * 4);
    return t;
  }
  Tensor c() { return Tensor(host_.data(), s_, dt_, Tier::host); }
  Tensor g() { return Tensor(dev_ + kGuard, s_, dt_, Tier::device); }
  const std::vector<float>& cpu_values() const { return host_; }
  // The GPU's values; fails the test when a guard word changed.
  std::vector<float> gpu_values(const char* what) const {
    const size_t n = size_t(s_.numel());
    std::vector<uint32_t> back(n + 2 * kGuard);
    cuda_to_host(back.data(), dev_, back.size() * 4);
    for (size_t i = 0; i < kGuard; i++) {
      EXPECT_EQ(back[i], kPattern) << what << ": GPU write before the buffer at -" << (kGuard - i);
      EXPECT_EQ(back[kGuard + n + i], kPattern) << what << ": GPU write past the buffer at +" << i;
    }
    std::vector<float> v(n);
    std::memcpy(v.data(), back.data() + kGuard, n * 4);
    return v;
  }

 private:
  static std::vector<float> as_floats(const std::vector<int32_t>& ids) {
    std::vector<float> f(ids.size());
    std::memcpy(f.data(), ids.data(), ids.size() * 4);
    return f;
  }
  Shape s_;
  DType dt_;
  std::vector<float> host_;
  uint32_t* dev_ = nullptr;
};

void expect_same(const Twin& t, const char* what, double tol = kTol) {
  const std::vector<float> g = t.gpu_values(what);
  const double e = rel_norm_err(g, t.cpu_values());
  EXPECT_LE(e, tol) << what << ": GPU vs CPU relative-norm error";  // NaN fails too
}

std::unique_ptr<Twin> rnd(Shape s, uint64_t seed, float scale = 1.f) {
  return std::make_unique<Twin>(s, randn(size_t(s.numel()), seed, scale));
}

TEST_F(BackendOps, EmbeddingForwardBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t N = 77, C = 300, V = 13;
  std::vector<int32_t> ids(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) ids[size_t(n)] = int32_t((n * 5) % V);  // repeated ids
  Twin tok({N}, ids);
  auto wte = rnd({V, C}, 1), out = Twin::out({N, C}), dout = rnd({N, C}, 2), dwte = rnd({V, C}, 3);
  embedding_forward(out->c(), tok.c(), wte->c(), cpu);
  embedding_forward(out->g(), tok.g(), wte->g(), gpu);
  expect_same(*out, "embedding out");
  embedding_backward(dwte->c(), dout->c(), tok.c(), cpu);
  embedding_backward(dwte->g(), dout->g(), tok.g(), gpu);
  expect_same(*dwte, "embedding dwte (+=)");
}

TEST_F(BackendOps, RmsnormForwardBackward) {
  SKIP_WITHOUT_GPU();
  for (bool acc : {false, true}) {
    const int64_t N = 45, C = 1000;
    auto x = rnd({N, C}, 4), w = rnd({C}, 5), out = Twin::out({N, C}), rstd = Twin::out({N});
    rmsnorm_forward(out->c(), rstd->c(), x->c(), w->c(), 1e-5f, cpu);
    rmsnorm_forward(out->g(), rstd->g(), x->g(), w->g(), 1e-5f, gpu);
    expect_same(*out, "rmsnorm out");
    expect_same(*rstd, "rmsnorm rstd");
    auto dout = rnd({N, C}, 6), dw = rnd({C}, 7);
    auto dx = acc ? rnd({N, C}, 8) : Twin::out({N, C});
    rmsnorm_backward(dx->c(), dw->c(), dout->c(), x->c(), w->c(), rstd->c(), cpu, acc);
    rmsnorm_backward(dx->g(), dw->g(), dout->g(), x->g(), w->g(), rstd->g(), gpu, acc);
    expect_same(*dx, acc ? "rmsnorm dx (+=)" : "rmsnorm dx");
    expect_same(*dw, "rmsnorm dw (+=)");
  }
}

TEST_F(BackendOps, MatmulForwardBackward) {
  SKIP_WITHOUT_GPU();
  for (bool acc : {false, true}) {
    const int64_t N = 67, IC = 96, OC = 130;
    auto x = rnd({N, IC}, 9), w = rnd({OC, IC}, 10);
    auto out = acc ? rnd({N, OC}, 11) : Twin::out({N, OC});
    matmul_forward(out->c(), x->c(), w->c(), cpu, acc);
    matmul_forward(out->g(), x->g(), w->g(), gpu, acc);
    expect_same(*out, "matmul out");
    auto dout = rnd({N, OC}, 12), dw = rnd({OC, IC}, 13);
    auto dx = acc ? rnd({N, IC}, 14) : Twin::out({N, IC});
    matmul_backward(dx->c(), dw->c(), dout->c(), x->c(), w->c(), cpu, acc);
    matmul_backward(dx->g(), dw->g(), dout->g(), x->g(), w->g(), gpu, acc);
    expect_same(*dx, "matmul dx");
    expect_same(*dw, "matmul dw (+=)");
  }
}

TEST_F(BackendOps, RopeForwardBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t N = 33, H = 6, HS = 64, P = 100;
  std::vector<int32_t> pos(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) pos[size_t(n)] = int32_t((n * 37) % P);
  Twin tp({N}, pos);
  auto cs = rnd({P, HS / 2}, 15), sn = rnd({P, HS / 2}, 16), x = rnd({N, H, HS}, 17);
  auto out = Twin::out({N, H, HS});
  rope_forward(out->c(), x->c(), tp.c(), cs->c(), sn->c(), cpu);
  rope_forward(out->g(), x->g(), tp.g(), cs->g(), sn->g(), gpu);
  expect_same(*out, "rope out");
  auto dx = Twin::out({N, H, HS});
  rope_backward(dx->c(), x->c(), tp.c(), cs->c(), sn->c(), cpu);
  rope_backward(dx->g(), x->g(), tp.g(), cs->g(), sn->g(), gpu);
  expect_same(*dx, "rope dx");
  rope_forward(x->c(), x->c(), tp.c(), cs->c(), sn->c(), cpu);  // in place
  rope_forward(x->g(), x->g(), tp.g(), cs->g(), sn->g(), gpu);
  expect_same(*x, "rope in place");
}

TEST_F(BackendOps, SwigluForwardBackward) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 5001;
  auto g = rnd({n}, 18, 3.f), u = rnd({n}, 19), out = Twin::out({n}), dout = rnd({n}, 20);
  swiglu_forward(out->c(), g->c(), u->c(), cpu);
  swiglu_forward(out->g(), g->g(), u->g(), gpu);
  expect_same(*out, "swiglu out");
  auto dg = Twin::out({n}), du = Twin::out({n});
  swiglu_backward(dg->c(), du->c(), dout->c(), g->c(), u->c(), cpu);
  swiglu_backward(dg->g(), du->g(), dout->g(), g->g(), u->g(), gpu);
  expect_same(*dg, "swiglu dgate");
  expect_same(*du, "swiglu dup");
}

TEST_F(BackendOps, LmHeadLossTiled) {
  SKIP_WITHOUT_GPU();
  const int64_t N = 50, C = 64, V = 1000;
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) t[size_t(n)] = n % 7 == 3 ? kIgnoreIndex : int32_t((n * 131) % V);
  Twin tt({N}, t);
  auto h = rnd({N, C}, 21), w = rnd({V, C}, 22, 0.2f), dh = Twin::out({N, C}), dw = rnd({V, C}, 23);
  const double lc = lm_head_loss(dh->c(), dw->c(), h->c(), w->c(), tt.c(), 1.0 / 43, 16, cpu);
  const double lg = lm_head_loss(dh->g(), dw->g(), h->g(), w->g(), tt.g(), 1.0 / 43, 16, gpu);
  EXPECT_NEAR(lg, lc, 1e-6 * std::abs(lc)) << "loss";
  expect_same(*dh, "lm_head dhidden");
  expect_same(*dw, "lm_head dweight (+=)");
  const double fc = lm_head_loss(Tensor(), Tensor(), h->c(), w->c(), tt.c(), 1.0, 0, cpu);
  const double fg = lm_head_loss(Tensor(), Tensor(), h->g(), w->g(), tt.g(), 1.0, 0, gpu);
  EXPECT_NEAR(fg, fc, 1e-6 * std::abs(fc)) << "forward-only loss";
}

TEST_F(BackendOps, AdamWAndElementwise) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 3000;
  auto p = rnd({n}, 24), g = rnd({n}, 25), m = rnd({n}, 26, 0.1f),
       v = std::make_unique<Twin>(Shape{n}, std::vector<float>(size_t(n), 0.3f));
  AdamWParams ap;
  ap.lr = 1e-2f, ap.weight_decay = 0.1f, ap.step = 3;
  adamw_update(p->c(), g->c(), m->c(), v->c(), ap, cpu);
  adamw_update(p->g(), g->g(), m->g(), v->g(), ap, gpu);
  expect_same(*p, "adamw param");
  expect_same(*m, "adamw m");
  expect_same(*v, "adamw v");
  auto a = rnd({n}, 27), out = Twin::out({n});
  add_forward(out->c(), a->c(), g->c(), cpu);
  add_forward(out->g(), a->g(), g->g(), gpu);
  expect_same(*out, "add");
  scale_inplace(a->c(), 0.37f, cpu);
  scale_inplace(a->g(), 0.37f, gpu);
  expect_same(*a, "scale");
  axpy_inplace(a->c(), -1.5f, g->c(), cpu);
  axpy_inplace(a->g(), -1.5f, g->g(), gpu);
  expect_same(*a, "axpy");
  const double sc = sum_squares(a->c(), cpu), sg = sum_squares(a->g(), gpu);
  EXPECT_NEAR(sg, sc, 1e-9 * sc) << "sum_squares";
  fill_inplace(a->c(), 2.5f, cpu);
  fill_inplace(a->g(), 2.5f, gpu);
  expect_same(*a, "fill");
}

TEST_F(BackendOps, BiasAddForwardBackward) {
  SKIP_WITHOUT_GPU();
  // 70 columns: two full blocks of 32 and a partial one; 1000 rows: more than the kernel's 32 warps
  const int64_t N = 1000, C = 70;
  auto y = rnd({N, C}, 50), b = rnd({C}, 51), dy = rnd({N, C}, 52), db = rnd({C}, 53);
  bias_add_forward(y->c(), b->c(), cpu);
  bias_add_forward(y->g(), b->g(), gpu);
  expect_same(*y, "bias_add y");
  bias_add_backward(db->c(), dy->c(), cpu);  // db += (accumulates onto its start)
  bias_add_backward(db->g(), dy->g(), gpu);
  expect_same(*db, "bias_add db");
  auto one = rnd({1, 5}, 54), d1 = rnd({5}, 55), b1 = rnd({5}, 56);  // one row, fewer columns than a warp
  bias_add_forward(one->c(), b1->c(), cpu);
  bias_add_forward(one->g(), b1->g(), gpu);
  expect_same(*one, "bias_add one row");
  bias_add_backward(d1->c(), one->c(), cpu);
  bias_add_backward(d1->g(), one->g(), gpu);
  expect_same(*d1, "bias_add db one row");
}

TEST_F(BackendOps, ConvertDtype) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 777;
  auto x = rnd({n}, 60, 3.f), back = Twin::out({n});
  Buffer hc(cpu_mem, Tier::device, Tag::workspace, {n}, DType::BF16),
      hg(gpu_mem, Tier::device, Tag::workspace, {n}, DType::BF16);
  convert_dtype(hc.t(), x->c(), cpu);
  convert_dtype(hg.t(), x->g(), gpu);
  convert_dtype(back->c(), hc.t(), cpu);
  convert_dtype(back->g(), hg.t(), gpu);
  expect_same(*back, "convert f32 -> bf16 -> f32", 0);  // the same rounding, bit for bit
}

TEST_F(BackendOps, CopyBetweenTiers) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 1234;
  auto src = rnd({n}, 28), dst = Twin::out({n});
  copy_tensor(dst->g(), src->g(), gpu);  // device to device
  expect_same(*dst, "copy device->device", 0);
  std::vector<float> host(static_cast<size_t>(n));
  copy_tensor(Tensor(host.data(), {n}), dst->g(), gpu);  // device to pageable host
  EXPECT_EQ(rel_norm_err(host, src->cpu_values()), 0.0);
  Buffer pinned(gpu_mem, Tier::host, Tag::workspace, {n});
  copy_tensor(pinned.t(), src->g(), gpu);
  Buffer dev(gpu_mem, Tier::device, Tag::workspace, {n});
  dev.zero();
  copy_tensor(dev.t(), pinned.t(), gpu);
  copy_tensor(Tensor(host.data(), {n}), dev.t(), gpu);
  EXPECT_EQ(rel_norm_err(host, src->cpu_values()), 0.0) << "device -> pinned -> device -> host";
  EXPECT_GE(gpu_mem.tracker().tier(Tier::device).peak, n * 4) << "the tracker sees GPU allocations";
  EXPECT_THROW(host_f32(dev.t(), gpu, "test"), Error) << "host access to GPU memory is refused";
}

struct AttnCase {
  const char* name;
  int64_t B, Tq, Tk, NH, NKV, HS, q_offset;
  bool causal, docs;
  int64_t window = 0;  // > 0: a sliding window (Mistral, Qwen's sliding layers)
};

void run_attention_case(BackendOps& f, const AttnCase& a, double tol = kTol) {
  SCOPED_TRACE(a.name);
  auto q = rnd({a.B, a.Tq, a.NH, a.HS}, 30), k = rnd({a.B, a.Tk, a.NKV, a.HS}, 31),
       v = rnd({a.B, a.Tk, a.NKV, a.HS}, 32);
  auto out = Twin::out({a.B, a.Tq, a.NH, a.HS}), lse = Twin::out({a.B, a.NH, a.Tq});
  std::vector<int32_t> qd(size_t(a.B * a.Tq)), kd(size_t(a.B * a.Tk));
  // documents of uneven lengths; the first query rows of a document that starts after them see nothing
  for (size_t i = 0; i < kd.size(); i++) kd[i] = int32_t((i % size_t(a.Tk)) / 7);
  for (size_t i = 0; i < qd.size(); i++) qd[i] = int32_t(((i % size_t(a.Tq)) + size_t(a.q_offset)) / 7);
  Twin tqd({a.B, a.Tq}, qd), tkd({a.B, a.Tk}, kd);
  AttentionParams pc, pg;
  pc.q_offset = pg.q_offset = a.q_offset;
  pc.causal = pg.causal = a.causal;
  pc.window = pg.window = a.window;
  if (a.docs) pc.q_doc = tqd.c(), pc.k_doc = tkd.c(), pg.q_doc = tqd.g(), pg.k_doc = tkd.g();
  attention_forward(out->c(), lse->c(), q->c(), k->c(), v->c(), pc, f.cpu);
  attention_forward(out->g(), lse->g(), q->g(), k->g(), v->g(), pg, f.gpu);
  expect_same(*out, "attention out", tol);
  // -inf rows must match exactly; compare the finite ones by norm
  std::vector<float> lg = lse->gpu_values("attention lse"), lc = lse->cpu_values();
  for (size_t i = 0; i < lc.size(); i++) {
    if (std::isinf(lc[i])) {
      EXPECT_TRUE(std::isinf(lg[i]) && lg[i] < 0) << "lse row " << i << " should be -inf, got " << lg[i];
      lg[i] = lc[i] = 0;
    }
  }
  EXPECT_LE(rel_norm_err(lg, lc), tol) << "attention lse";
  auto dout = rnd({a.B, a.Tq, a.NH, a.HS}, 33);
  auto dq = Twin::out({a.B, a.Tq, a.NH, a.HS}), dk = Twin::out({a.B, a.Tk, a.NKV, a.HS}),
       dv = Twin::out({a.B, a.Tk, a.NKV, a.HS});
  attention_backward(dq->c(), dk->c(), dv->c(), dout->c(), q->c(), k->c(), v->c(), out->c(), lse->c(), pc,
                     f.cpu);
  attention_backward(dq->g(), dk->g(), dv->g(), dout->g(), q->g(), k->g(), v->g(), out->g(), lse->g(), pg,
                     f.gpu);
  expect_same(*dq, "attention dq", tol);
  expect_same(*dk, "attention dk", tol);
  expect_same(*dv, "attention dv", tol);
}

TEST_F(BackendOps, AttentionForwardBackward) {
  SKIP_WITHOUT_GPU();
  const AttnCase cases[] = {
      {"causal", 2, 50, 50, 4, 4, 32, 0, true, false},
      {"gqa causal hs128", 1, 70, 70, 8, 2, 128, 0, true, false},
      {"mqa not causal", 1, 20, 33, 4, 1, 64, 0, false, false},
      {"chunk: queries after cached keys", 1, 24, 64, 4, 2, 64, 40, true, false},
      {"packed documents", 2, 40, 40, 4, 2, 32, 0, true, true},
      {"documents with an offset (rows that see nothing)", 1, 16, 48, 2, 1, 16, 32, true, true},
      {"sliding window", 2, 50, 50, 4, 2, 32, 0, true, false, 9},
      {"sliding window, chunk after cached keys", 1, 24, 64, 4, 2, 64, 40, true, false, 30},
      {"sliding window with documents", 1, 40, 40, 4, 1, 32, 0, true, true, 5},
      {"sliding window, not causal (keys past the query too)", 1, 20, 33, 2, 2, 16, 3, false, false, 6},
  };
  for (const AttnCase& c : cases) run_attention_case(*this, c);
}

TEST_F(BackendOps, AttentionMerge) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 2, Tq = 19, NH = 3, HS = 40;
  auto out = rnd({B, Tq, NH, HS}, 40), po = rnd({B, Tq, NH, HS}, 41);
  std::vector<float> l1 = randn(size_t(B * NH * Tq), 42), l2 = randn(size_t(B * NH * Tq), 43);
  for (size_t i = 0; i < l1.size(); i += 5) l1[i] = -INFINITY;  // one part saw nothing
  for (size_t i = 0; i < l2.size(); i += 7) l2[i] = -INFINITY;  // (i % 35 == 0: neither did)
  Twin lse({B, NH, Tq}, l1), plse({B, NH, Tq}, l2);
  attention_merge(out->c(), lse.c(), po->c(), plse.c(), cpu);
  attention_merge(out->g(), lse.g(), po->g(), plse.g(), gpu);
  expect_same(*out, "merge out");
  std::vector<float> lg = lse.gpu_values("merge lse"), lc = lse.cpu_values();
  for (size_t i = 0; i < lc.size(); i++)
    if (std::isinf(lc[i])) {
      EXPECT_EQ(lg[i], lc[i]) << i;
      lg[i] = lc[i] = 0;
    }
  EXPECT_LE(rel_norm_err(lg, lc), kTol) << "merge lse";
}

// bf16 math (GEMMs on bf16 tensor cores, attention through cuDNN) against the CPU's fp32: the bf16
// bound, a relative-norm error of 2e-2.
constexpr double kBf16Tol = 2e-2;

TEST_F(BackendOps, Bf16MathMatmulAndLoss) {
  SKIP_WITHOUT_GPU();
  gpu.math = DType::BF16;
  const int64_t N = 300, IC = 256, OC = 384;
  auto x = rnd({N, IC}, 50), w = rnd({OC, IC}, 51), out = Twin::out({N, OC});
  matmul_forward(out->c(), x->c(), w->c(), cpu);
  matmul_forward(out->g(), x->g(), w->g(), gpu);
  expect_same(*out, "bf16 matmul out", kBf16Tol);
  EXPECT_GT(rel_norm_err(out->gpu_values("bf16 matmul"), out->cpu_values()), 1e-6)
      << "bf16 math should round: is it really on?";
  auto dout = rnd({N, OC}, 52), dx = Twin::out({N, IC}), dw = rnd({OC, IC}, 53);
  matmul_backward(dx->c(), dw->c(), dout->c(), x->c(), w->c(), cpu);
  matmul_backward(dx->g(), dw->g(), dout->g(), x->g(), w->g(), gpu);
  expect_same(*dx, "bf16 matmul dx", kBf16Tol);
  expect_same(*dw, "bf16 matmul dw", kBf16Tol);
  const int64_t V = 2000, C = 128, M = 64;
  std::vector<int32_t> t(static_cast<size_t>(M));
  for (int64_t n = 0; n < M; n++) t[size_t(n)] = int32_t((n * 97) % V);
  Twin tt({M}, t);
  auto h = rnd({M, C}, 54), lw = rnd({V, C}, 55, 0.1f), dh = Twin::out({M, C}), dlw = rnd({V, C}, 56);
  const double lc = lm_head_loss(dh->c(), dlw->c(), h->c(), lw->c(), tt.c(), 1.0 / M, 24, cpu);
  const double lg = lm_head_loss(dh->g(), dlw->g(), h->g(), lw->g(), tt.g(), 1.0 / M, 24, gpu);
  EXPECT_NEAR(lg, lc, 1e-2 * std::abs(lc)) << "bf16 loss";
  expect_same(*dh, "bf16 lm_head dhidden", kBf16Tol);
  expect_same(*dlw, "bf16 lm_head dweight", kBf16Tol);
}

TEST_F(BackendOps, Bf16MathAttentionThroughCudnn) {
  SKIP_WITHOUT_GPU();
  EXPECT_TRUE(cuda::cudnn_attention_built()) << cuda::cudnn_attention_versions();
  gpu.math = DType::BF16;
  const AttnCase cases[] = {
      {"cudnn causal hs64", 2, 256, 256, 4, 4, 64, 0, true, false},
      {"cudnn gqa causal hs128", 1, 320, 320, 8, 2, 128, 0, true, false},
      {"cudnn T % 128 == 64", 1, 192, 192, 4, 1, 64, 0, true, false},
      {"cudnn last chunk: bottom-right", 1, 64, 256, 4, 2, 64, 192, true, false},
      {"cudnn not causal", 1, 100, 100, 2, 2, 64, 0, false, false},
      {"documents fall back to fp32 kernels", 1, 64, 64, 4, 2, 64, 0, true, true},
  };
  const int64_t before = attention_cudnn_runs();
  for (const AttnCase& c : cases) run_attention_case(*this, c, kBf16Tol);
  EXPECT_EQ(attention_cudnn_runs() - before, 2 * 5) << "cuDNN ran every case but the documents' (fwd + bwd)";
}

}  // namespace
}  // namespace longctx::test
