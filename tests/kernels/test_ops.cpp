// Every small op against a naive double-precision loop, its backward against
// central finite differences, and guard words around every output.
#include <cmath>

#include "harness.h"
#include "ops/adamw.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/lm_head_loss.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace longctx::test {
namespace {

struct OpTest : ::testing::Test {
  Memory mem;
  Context ctx = cpu_context(mem);
};

TEST_F(OpTest, EmbeddingForwardBackward) {
  const int64_t N = 37, C = 29, V = 11;
  auto wte = randn(size_t(V * C), 1);
  std::vector<int32_t> tok(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) tok[size_t(n)] = int32_t((n * 7) % V);  // repeats on purpose
  Guarded out(size_t(N * C));
  Tensor tt(tok.data(), {N}, DType::I32);
  embedding_forward(out.t({N, C}), tt, Tensor(wte.data(), {V, C}), ctx);
  out.check("out");
  std::vector<double> ref(size_t(N * C));
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) ref[size_t(n * C + c)] = wte[size_t(tok[size_t(n)] * C + c)];
  expect_close(out.data(), ref, 0, 0, "embedding");
  auto dout = randn(size_t(N * C), 2);
  Guarded dwte(size_t(V * C), 0.5f);
  embedding_backward(dwte.t({V, C}), Tensor(dout.data(), {N, C}), tt, ctx);
  dwte.check("dwte");
  std::vector<double> dref(size_t(V * C), 0.5);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) dref[size_t(tok[size_t(n)] * C + c)] += dout[size_t(n * C + c)];
  expect_close(dwte.data(), dref, 1e-6, 1e-6, "dwte");
  tok[3] = int32_t(V);
  EXPECT_THROW(embedding_forward(out.t({N, C}), tt, Tensor(wte.data(), {V, C}), ctx), Error);
}

TEST_F(OpTest, RmsnormMatchesDoubleAndFiniteDifferences) {
  const int64_t N = 13, C = 29;
  const float eps = 1e-5f;
  auto x = randn(size_t(N * C), 3), w = randn(size_t(C), 4), W = randn(size_t(N * C), 5);
  for (auto& v : w) v += 1.f;
  Guarded out(size_t(N * C)), rstd(static_cast<size_t>(N));
  auto fwd = [&] {
    rmsnorm_forward(out.t({N, C}), rstd.t({N}), Tensor(x.data(), {N, C}), Tensor(w.data(), {C}), eps, ctx);
    return dot(out.data(), W.data(), size_t(N * C));
  };
  fwd();
  out.check("out");
  rstd.check("rstd");
  std::vector<double> ref(size_t(N * C));
  for (int64_t n = 0; n < N; n++) {
    double ss = 0;
    for (int64_t c = 0; c < C; c++) ss += double(x[size_t(n * C + c)]) * x[size_t(n * C + c)];
    const double r = 1 / std::sqrt(ss / double(C) + eps);
    for (int64_t c = 0; c < C; c++) ref[size_t(n * C + c)] = x[size_t(n * C + c)] * r * w[size_t(c)];
  }
  expect_close(out.data(), ref, 1e-5, 1e-6, "rmsnorm");
  Guarded dx(size_t(N * C)), dw(static_cast<size_t>(C));
  rmsnorm_backward(dx.t({N, C}), dw.t({C}), Tensor(W.data(), {N, C}), Tensor(x.data(), {N, C}),
                   Tensor(w.data(), {C}), rstd.t({N}), ctx);
  dx.check("dx");
  dw.check("dw");
  expect_fd_grad(x.data(), x.size(), dx.data(), fwd, "rmsnorm dx");
  expect_fd_grad(w.data(), w.size(), dw.data(), fwd, "rmsnorm dw");
  // in place (dinp aliasing dout) gives the same dx and dw
  std::vector<float> io(W);
  Guarded dw2(static_cast<size_t>(C));
  rmsnorm_backward(Tensor(io.data(), {N, C}), dw2.t({C}), Tensor(io.data(), {N, C}), Tensor(x.data(), {N, C}),
                   Tensor(w.data(), {C}), rstd.t({N}), ctx);
  for (size_t i = 0; i < io.size(); i++) EXPECT_EQ(io[i], dx[i]) << "in-place dx " << i;
  for (size_t i = 0; i < size_t(C); i++) EXPECT_EQ(dw2[i], dw[i]) << "in-place dw " << i;
  EXPECT_THROW(rmsnorm_forward(out.t({N, C}), rstd.t({N}), Tensor(x.data(), {N, C}),
                               Tensor(w.data(), {C - 1}), eps, ctx),
               Error);
}

TEST_F(OpTest, MatmulMatchesDoubleAndFiniteDifferences) {
  const int64_t N = 17, IC = 23, OC = 19;
  auto x = randn(size_t(N * IC), 6), w = randn(size_t(OC * IC), 7), W = randn(size_t(N * OC), 8);
  Guarded out(size_t(N * OC));
  auto fwd = [&] {
    matmul_forward(out.t({N, OC}), Tensor(x.data(), {N, IC}), Tensor(w.data(), {OC, IC}), ctx);
    return dot(out.data(), W.data(), size_t(N * OC));
  };
  fwd();
  out.check("out");
  std::vector<double> ref(size_t(N * OC));
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OC; o++) {
      double s = 0;
      for (int64_t i = 0; i < IC; i++) s += double(x[size_t(n * IC + i)]) * w[size_t(o * IC + i)];
      ref[size_t(n * OC + o)] = s;
    }
  expect_close(out.data(), ref, 1e-5, 1e-5, "matmul");
  Guarded dx(size_t(N * IC), 0.25f), dw(size_t(OC * IC), 0.5f);
  matmul_backward(dx.t({N, IC}), dw.t({OC, IC}), Tensor(W.data(), {N, OC}), Tensor(x.data(), {N, IC}),
                  Tensor(w.data(), {OC, IC}), ctx, /*accumulate=*/true);
  dx.check("dx");
  dw.check("dw");
  for (auto* g : {&dx, &dw})
    for (size_t i = 0; i < g->size(); i++) (*g)[i] -= g == &dx ? 0.25f : 0.5f;  // remove what was there
  expect_fd_grad(x.data(), x.size(), dx.data(), fwd, "matmul dx");
  expect_fd_grad(w.data(), w.size(), dw.data(), fwd, "matmul dw");
}

TEST_F(OpTest, RopeMatchesDoubleAndInverts) {
  const int64_t N = 9, H = 3, HS = 10, P = 40, half = HS / 2;
  auto x = randn(size_t(N * H * HS), 9), W = randn(size_t(N * H * HS), 10);
  std::vector<float> cs(size_t(P * half)), sn(size_t(P * half));
  for (int64_t p = 0; p < P; p++)
    for (int64_t i = 0; i < half; i++) {
      const double a = double(p) * std::pow(100.0, -double(2 * i) / double(HS));
      cs[size_t(p * half + i)] = float(std::cos(a));
      sn[size_t(p * half + i)] = float(std::sin(a));
    }
  std::vector<int32_t> pos(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) pos[size_t(n)] = int32_t((n * 5 + 3) % P);
  Tensor tp(pos.data(), {N}, DType::I32), tc(cs.data(), {P, half}), ts(sn.data(), {P, half});
  Guarded out(x.size());
  auto fwd = [&] {
    rope_forward(out.t({N, H, HS}), Tensor(x.data(), {N, H, HS}), tp, tc, ts, ctx);
    return dot(out.data(), W.data(), x.size());
  };
  fwd();
  out.check("out");
  std::vector<double> ref(x.size());
  for (int64_t n = 0; n < N; n++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < half; i++) {
        const size_t b = size_t((n * H + h) * HS);
        const double a = double(pos[size_t(n)]) * std::pow(100.0, -double(2 * i) / double(HS));
        const double x0 = x[b + size_t(i)], x1 = x[b + size_t(i + half)];
        ref[b + size_t(i)] = x0 * std::cos(a) - x1 * std::sin(a);
        ref[b + size_t(i + half)] = x1 * std::cos(a) + x0 * std::sin(a);
      }
  expect_close(out.data(), ref, 1e-5, 1e-6, "rope");
  Guarded dx(x.size());
  rope_backward(dx.t({N, H, HS}), Tensor(W.data(), {N, H, HS}), tp, tc, ts, ctx);
  dx.check("dx");
  expect_fd_grad(x.data(), x.size(), dx.data(), fwd, "rope dx");
  pos[0] = int32_t(P);
  EXPECT_THROW(rope_forward(out.t({N, H, HS}), Tensor(x.data(), {N, H, HS}), tp, tc, ts, ctx), Error);
}

TEST_F(OpTest, SwigluMatchesDoubleAndFiniteDifferences) {
  const int64_t N = 7, F = 45;
  auto g = randn(size_t(N * F), 11, 2.f), u = randn(size_t(N * F), 12), W = randn(size_t(N * F), 13);
  Guarded out(g.size());
  auto fwd = [&] {
    swiglu_forward(out.t({N, F}), Tensor(g.data(), {N, F}), Tensor(u.data(), {N, F}), ctx);
    return dot(out.data(), W.data(), g.size());
  };
  fwd();
  out.check("out");
  std::vector<double> ref(g.size());
  for (size_t i = 0; i < g.size(); i++) ref[i] = double(g[i]) / (1 + std::exp(-double(g[i]))) * u[i];
  expect_close(out.data(), ref, 1e-5, 1e-6, "swiglu");
  Guarded dg(g.size()), du(g.size());
  swiglu_backward(dg.t({N, F}), du.t({N, F}), Tensor(W.data(), {N, F}), Tensor(g.data(), {N, F}),
                  Tensor(u.data(), {N, F}), ctx);
  dg.check("dgate");
  du.check("dup");
  expect_fd_grad(g.data(), g.size(), dg.data(), fwd, "swiglu dgate");
  expect_fd_grad(u.data(), u.size(), du.data(), fwd, "swiglu dup");
}

// Loss in double for one row set; grads by the same formula in double.
double ref_xent(const std::vector<float>& h, const std::vector<float>& w, const std::vector<int32_t>& t,
                int64_t N, int64_t C, int64_t V, double scale, std::vector<double>* dh,
                std::vector<double>* dw) {
  double total = 0;
  if (dh) dh->assign(size_t(N * C), 0.0);
  if (dw) dw->assign(size_t(V * C), 0.0);
  std::vector<double> z(static_cast<size_t>(V));
  for (int64_t n = 0; n < N; n++) {
    if (t[size_t(n)] == kIgnoreIndex) continue;
    double mx = -1e300;
    for (int64_t v = 0; v < V; v++) {
      double s = 0;
      for (int64_t c = 0; c < C; c++) s += double(h[size_t(n * C + c)]) * w[size_t(v * C + c)];
      z[size_t(v)] = s;
      mx = std::max(mx, s);
    }
    double se = 0;
    for (double s : z) se += std::exp(s - mx);
    const double lse = mx + std::log(se);
    total += lse - z[size_t(t[size_t(n)])];
    for (int64_t v = 0; v < V; v++) {
      const double d = (std::exp(z[size_t(v)] - lse) - (v == t[size_t(n)])) * scale;
      for (int64_t c = 0; c < C; c++) {
        (*dh)[size_t(n * C + c)] += d * w[size_t(v * C + c)];
        (*dw)[size_t(v * C + c)] += d * h[size_t(n * C + c)];
      }
    }
  }
  return total * scale;
}

TEST_F(OpTest, LmHeadLossTiledMatchesDouble) {
  const int64_t N = 23, C = 13, V = 53;
  auto h = randn(size_t(N * C), 14), w = randn(size_t(V * C), 15, 0.5f);
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) t[size_t(n)] = n % 5 == 2 ? kIgnoreIndex : int32_t((n * 11) % V);
  const double scale = 1.0 / 19;
  std::vector<double> dh_ref, dw_ref;
  const double ref = ref_xent(h, w, t, N, C, V, scale, &dh_ref, &dw_ref);
  for (int64_t tile : {int64_t(1), int64_t(7), int64_t(0), N}) {
    Guarded dh(size_t(N * C)), dw(size_t(V * C));
    const double loss =
        lm_head_loss(dh.t({N, C}), dw.t({V, C}), Tensor(h.data(), {N, C}), Tensor(w.data(), {V, C}),
                     Tensor(t.data(), {N}, DType::I32), scale, tile, ctx);
    dh.check("dhidden");
    dw.check("dweight");
    EXPECT_NEAR(loss, ref, 1e-6 * std::abs(ref)) << "tile " << tile;
    expect_close(dh.data(), dh_ref, 1e-4, 1e-7, "dhidden");
    expect_close(dw.data(), dw_ref, 1e-4, 1e-7, "dweight");
    if (tile == 7) {  // and against finite differences of the kernel's own loss
      auto f = [&] {
        return lm_head_loss(Tensor(), Tensor(), Tensor(h.data(), {N, C}), Tensor(w.data(), {V, C}),
                            Tensor(t.data(), {N}, DType::I32), scale, tile, ctx);
      };
      expect_fd_grad(h.data(), h.size(), dh.data(), f, "lm_head dhidden", 24, 1e-2f, 2e-2, 1e-4);
      expect_fd_grad(w.data(), w.size(), dw.data(), f, "lm_head dweight", 24, 1e-2f, 2e-2, 1e-4);
    }
  }
  t[0] = int32_t(V);
  EXPECT_THROW(lm_head_loss(Tensor(), Tensor(), Tensor(h.data(), {N, C}), Tensor(w.data(), {V, C}),
                            Tensor(t.data(), {N}, DType::I32), scale, 0, ctx),
               Error);
}

TEST_F(OpTest, LmHeadLossWorkspaceIsOneTile) {
  const int64_t N = 40, C = 8, V = 100;
  auto h = randn(size_t(N * C), 16), w = randn(size_t(V * C), 17);
  std::vector<int32_t> t(size_t(N), 1);
  mem.tracker().reset_peaks();
  lm_head_loss(Tensor(), Tensor(), Tensor(h.data(), {N, C}), Tensor(w.data(), {V, C}),
               Tensor(t.data(), {N}, DType::I32), 1.0, 8, ctx);
  EXPECT_EQ(size_t(mem.tracker().tag(Tier::device, Tag::workspace).peak),
            lm_head_loss_workspace_bytes(N, V, C, 8));
  EXPECT_LT(lm_head_loss_workspace_bytes(N, V, C, 8), size_t(N * V * 4));
}

TEST_F(OpTest, AdamWMatchesPyTorchFormula) {
  const int64_t n = 31;
  auto p = randn(size_t(n), 18), m = std::vector<float>(size_t(n)), v = std::vector<float>(size_t(n));
  std::vector<double> pd(p.begin(), p.end()), md(static_cast<size_t>(n)), vd(static_cast<size_t>(n));
  AdamWParams a;
  a.lr = 1e-2f;
  a.weight_decay = 0.1f;
  for (int64_t step = 1; step <= 5; step++) {
    auto g = randn(size_t(n), uint64_t(100 + step));
    a.step = step;
    adamw_update(Tensor(p.data(), {n}), Tensor(g.data(), {n}), Tensor(m.data(), {n}), Tensor(v.data(), {n}),
                 a, ctx);
    for (int64_t i = 0; i < n; i++) {
      const size_t k = size_t(i);
      pd[k] *= 1 - double(a.lr) * a.weight_decay;
      md[k] = a.beta1 * md[k] + (1 - double(a.beta1)) * g[k];
      vd[k] = a.beta2 * vd[k] + (1 - double(a.beta2)) * double(g[k]) * g[k];
      const double mh = md[k] / (1 - std::pow(double(a.beta1), double(step)));
      const double vh = vd[k] / (1 - std::pow(double(a.beta2), double(step)));
      pd[k] -= a.lr * mh / (std::sqrt(vh) + a.eps);
    }
  }
  expect_close(p.data(), pd, 1e-5, 1e-6, "adamw");
}

// The bias of a linear layer: added to every row; its gradient is the column sum of dy (accumulated),
// by finite differences too. Sizes past the kernels' parallel threshold, and the shape errors.
TEST_F(OpTest, BiasAddForwardBackward) {
  for (auto [N, C] : {std::pair<int64_t, int64_t>{7, 13}, {1031, 67}}) {
    auto y0 = randn(size_t(N * C), 30), b = randn(size_t(C), 31), W = randn(size_t(N * C), 32);
    Guarded y(size_t(N * C));
    auto fwd = [&] {
      std::copy(y0.begin(), y0.end(), y.data());
      bias_add_forward(y.t({N, C}), Tensor(b.data(), {C}), ctx);
      return dot(y.data(), W.data(), size_t(N * C));
    };
    fwd();
    y.check("y");
    std::vector<double> ref(size_t(N * C));
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < C; c++) ref[size_t(n * C + c)] = double(y0[size_t(n * C + c)]) + b[size_t(c)];
    expect_close(y.data(), ref, 1e-6, 1e-6, "bias_add");
    Guarded db(size_t(C), 0.25f);  // accumulates
    bias_add_backward(db.t({C}), Tensor(W.data(), {N, C}), ctx);
    db.check("db");
    std::vector<double> dref(size_t(C), 0.25);
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < C; c++) dref[size_t(c)] += W[size_t(n * C + c)];
    expect_close(db.data(), dref, 1e-6, 1e-5, "bias_add db");
    for (int64_t c = 0; c < C; c++) db[size_t(c)] -= 0.25f;
    expect_fd_grad(b.data(), b.size(), db.data(), fwd, "bias_add fd", 24, 1e-2f, 2e-2, 2e-3 * double(N));
  }
  std::vector<float> buf(64);
  expect_error(
      [&] {
        bias_add_forward(Tensor(buf.data(), {4, 8}), Tensor(buf.data(), {7}), ctx);
      },
      {"[bias_add]", "bias", "(7)", "(8)"});
  expect_error(
      [&] {
        bias_add_backward(Tensor(buf.data(), {8}), Tensor(buf.data(), {4, 9}), ctx);
      },
      {"[bias_add_backward]", "(8)", "(9)"});
}

// F32 <-> BF16: round to nearest even (ties to even, NaN kept, infinities kept), and back exactly.
TEST_F(OpTest, ConvertDtypeRoundsToNearestEven) {
  const float one_ulp = std::ldexp(1.f, -7);  // bf16's spacing at 1
  std::vector<float> x = {1.f,
                          1.f + one_ulp / 2,
                          1.f + 1.5f * one_ulp,
                          1.f + one_ulp / 4,
                          -3.14159f,
                          1e-40f,
                          259.f,
                          INFINITY,
                          -INFINITY,
                          NAN};
  const std::vector<float> want = {1.f, 1.f,   1.f + 2 * one_ulp, 1.f,      -3.140625f,
                                   0.f, 260.f, INFINITY,          -INFINITY};
  std::vector<uint16_t> h(x.size());
  std::vector<float> back(x.size());
  const int64_t n = int64_t(x.size());
  convert_dtype(Tensor(h.data(), {n}, DType::BF16), Tensor(x.data(), {n}), ctx);
  convert_dtype(Tensor(back.data(), {n}), Tensor(h.data(), {n}, DType::BF16), ctx);
  for (size_t i = 0; i < want.size(); i++) {
    if (i == 5) {  // a denormal keeps its bf16 rounding (as f32_to_bf16 does it)
      EXPECT_EQ(back[i], bf16_to_f32(f32_to_bf16(x[i])));
      continue;
    }
    EXPECT_EQ(back[i], want[i]) << i;
  }
  EXPECT_TRUE(std::isnan(back.back()));
  std::vector<float> buf(8);
  expect_error([&] { convert_dtype(Tensor(buf.data(), {4}), Tensor(buf.data(), {4}), ctx); },
               {"[convert]", "F32 to F32"});
  expect_error([&] { convert_dtype(Tensor(h.data(), {3}, DType::BF16), Tensor(buf.data(), {4}), ctx); },
               {"[convert]", "4 elements into 3"});
}

TEST_F(OpTest, BudgetOverflowNamesTagAndBytes) {
  mem.tracker().set_budget(Tier::device, 1000);
  Buffer ok(mem, Tier::device, Tag::weights, {200});
  try {
    Buffer too_much(mem, Tier::device, Tag::checkpoint, {100});
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("checkpoint"), std::string::npos) << m;
    EXPECT_NE(m.find("400"), std::string::npos) << m;
    EXPECT_NE(m.find("1000"), std::string::npos) << m;
  }
  EXPECT_EQ(mem.tracker().tier(Tier::device).current, 800);
  EXPECT_EQ(mem.tracker().tag(Tier::device, Tag::weights).peak, 800);
}

}  // namespace
}  // namespace longctx::test
