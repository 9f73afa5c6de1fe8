// Flash attention against a naive double-precision reference (full softmax,
// analytic backward), by central finite differences, and at the op boundary.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "harness.h"
#include "kernels/cuda/cuda_info.h"
#include "ops/attention.h"

namespace longctx::test {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

enum class Docs { none, packed, orphans };  // orphans: some queries carry an id no key has

struct Case {
  const char* name;
  int64_t B, Tq, Tk, NH, NKV, HS;
  int64_t q_offset = 0;
  bool causal = true;
  Docs docs = Docs::none;
  float scale = 0.f;
  int64_t window = 0;  // sliding window (0: none)
};

// Inputs of one case, seeded by its sizes.
struct Inputs {
  Case c;
  std::vector<float> q, k, v, dout;   // (B, Tq, NH, HS), (B, Tk, NKV, HS) x2, (B, Tq, NH, HS)
  std::vector<int32_t> q_doc, k_doc;  // (B, Tq), (B, Tk) or empty
  float scale() const { return c.scale != 0.f ? c.scale : float(1.0 / std::sqrt(double(c.HS))); }
  size_t nq() const { return size_t(c.B * c.Tq * c.NH * c.HS); }
  size_t nk() const { return size_t(c.B * c.Tk * c.NKV * c.HS); }
};

// Documents of 23 positions each (by absolute position, so a query at offset
// q_offset + i and the key at the same position share an id).
int32_t doc_of(int64_t pos, int64_t b) { return int32_t((pos + 5 * b) / 23); }

Inputs make_inputs(const Case& c, uint64_t seed = 1) {
  Inputs in;
  in.c = c;
  in.q = randn(in.nq(), seed * 11 + 1);
  in.k = randn(in.nk(), seed * 11 + 2);
  in.v = randn(in.nk(), seed * 11 + 3);
  in.dout = randn(in.nq(), seed * 11 + 4);
  if (c.docs != Docs::none) {
    for (int64_t b = 0; b < c.B; b++) {
      for (int64_t i = 0; i < c.Tq; i++) {
        const bool orphan = c.docs == Docs::orphans && (i % 7 == 3 || i == c.Tq - 1);
        in.q_doc.push_back(orphan ? 1000 + int32_t(i) : doc_of(c.q_offset + i, b));
      }
      for (int64_t j = 0; j < c.Tk; j++) in.k_doc.push_back(doc_of(j, b));
    }
  }
  return in;
}

AttentionParams params_of(Inputs& in) {
  AttentionParams p;
  p.q_offset = in.c.q_offset;
  p.causal = in.c.causal;
  p.scale = in.c.scale;
  p.window = in.c.window;
  if (!in.q_doc.empty()) {
    p.q_doc = Tensor(in.q_doc.data(), {in.c.B, in.c.Tq}, DType::I32);
    p.k_doc = Tensor(in.k_doc.data(), {in.c.B, in.c.Tk}, DType::I32);
  }
  return p;
}

bool visible(const Inputs& in, int64_t b, int64_t i, int64_t j) {
  const Case& c = in.c;
  if (c.causal && j > c.q_offset + i) return false;
  if (c.window > 0 && j <= c.q_offset + i - c.window) return false;
  return in.q_doc.empty() || in.q_doc[size_t(b * c.Tq + i)] == in.k_doc[size_t(b * c.Tk + j)];
}

struct Ref {
  std::vector<double> out, lse, dq, dk, dv;
};

// Full softmax per query row in double, then its analytic backward:
// D = dout . out, dS = P (dout . v - D), dq = scale dS k, dk = scale dS q, dv = P dout.
Ref reference(const Inputs& in) {
  const Case& c = in.c;
  const double scale = in.scale();
  Ref r{std::vector<double>(in.nq()), std::vector<double>(size_t(c.B * c.NH * c.Tq)),
        std::vector<double>(in.nq()), std::vector<double>(in.nk()), std::vector<double>(in.nk())};
  auto qi = [&](int64_t b, int64_t i, int64_t h) { return size_t(((b * c.Tq + i) * c.NH + h) * c.HS); };
  auto kj = [&](int64_t b, int64_t j, int64_t h) { return size_t(((b * c.Tk + j) * c.NKV + h) * c.HS); };
  std::vector<double> s(size_t(c.Tk)), dp(size_t(c.Tk));
  for (int64_t b = 0; b < c.B; b++)
    for (int64_t h = 0; h < c.NH; h++)
      for (int64_t i = 0; i < c.Tq; i++) {
        const int64_t kh = h / (c.NH / c.NKV);
        double m = kNegInf;
        for (int64_t j = 0; j < c.Tk; j++) {
          double dot = 0;
          for (int64_t d = 0; d < c.HS; d++) dot += double(in.q[qi(b, i, h) + d]) * in.k[kj(b, j, kh) + d];
          s[size_t(j)] = visible(in, b, i, j) ? scale * dot : kNegInf;
          m = std::max(m, s[size_t(j)]);
        }
        double& lse = r.lse[size_t((b * c.NH + h) * c.Tq + i)];
        if (m == kNegInf) {
          lse = kNegInf;  // out and gradients stay 0
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < c.Tk; j++) sum += std::exp(s[size_t(j)] - m);
        lse = m + std::log(sum);
        double D = 0;
        for (int64_t j = 0; j < c.Tk; j++) {
          const double p = std::exp(s[size_t(j)] - lse);
          double dpj = 0;
          for (int64_t d = 0; d < c.HS; d++) {
            r.out[qi(b, i, h) + d] += p * in.v[kj(b, j, kh) + d];
            dpj += double(in.dout[qi(b, i, h) + d]) * in.v[kj(b, j, kh) + d];
          }
          dp[size_t(j)] = dpj;
          D += p * dpj;
        }
        for (int64_t j = 0; j < c.Tk; j++) {
          const double p = std::exp(s[size_t(j)] - lse), ds = p * (dp[size_t(j)] - D);
          for (int64_t d = 0; d < c.HS; d++) {
            r.dq[qi(b, i, h) + d] += scale * ds * in.k[kj(b, j, kh) + d];
            r.dk[kj(b, j, kh) + d] += scale * ds * in.q[qi(b, i, h) + d];
            r.dv[kj(b, j, kh) + d] += p * in.dout[qi(b, i, h) + d];
          }
        }
      }
  return r;
}

// Outputs of the kernels, in guarded buffers pre-filled with junk so that
// assignment (not accumulation) is checked too.
struct Outputs {
  Guarded out, lse, dq, dk, dv;
  explicit Outputs(const Inputs& in)
      : out(in.nq(), 7.f),
        lse(size_t(in.c.B * in.c.NH * in.c.Tq), 7.f),
        dq(in.nq(), 7.f),
        dk(in.nk(), 7.f),
        dv(in.nk(), 7.f) {}
  void check_guards() { out.check("out"), lse.check("lse"), dq.check("dq"), dk.check("dk"), dv.check("dv"); }
};

void run(Inputs& in, Outputs& o, bool backward = true) {
  const Case& c = in.c;
  Memory mem;
  Context ctx = cpu_context(mem);
  const Shape qs{c.B, c.Tq, c.NH, c.HS}, ks{c.B, c.Tk, c.NKV, c.HS};
  const Tensor q(in.q.data(), qs), k(in.k.data(), ks), v(in.v.data(), ks);
  const AttentionParams p = params_of(in);
  attention_forward(o.out.t(qs), o.lse.t({c.B, c.NH, c.Tq}), q, k, v, p, ctx);
  if (!backward) return;
  attention_backward(o.dq.t(qs), o.dk.t(ks), o.dv.t(ks), Tensor(in.dout.data(), qs), q, k, v, o.out.t(qs),
                     o.lse.t({c.B, c.NH, c.Tq}), p, ctx);
}

double max_abs(const std::vector<double>& e) {
  double m = 0;
  for (double x : e) m = std::max(m, std::abs(x));
  return m;
}

// Close to within tol relative to each value and to the magnitude of the whole tensor.
void expect_near_ref(const float* a, const std::vector<double>& e, double tol, const std::string& what) {
  expect_close(a, e, tol, tol * std::max(1.0, max_abs(e)), what.c_str());
}

class AttentionVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionVsReference, ForwardAndBackward) {
  Inputs in = make_inputs(GetParam());
  Outputs o(in);
  run(in, o);
  o.check_guards();
  Ref r = reference(in);
  const std::string n = GetParam().name;
  // -inf rows (no visible key) must be exactly -inf with an output of exactly 0.
  int64_t masked_rows = 0;
  for (size_t i = 0; i < r.lse.size(); i++) {
    if (r.lse[i] != kNegInf) continue;
    EXPECT_EQ(o.lse[i], -std::numeric_limits<float>::infinity()) << n << " lse " << i;
    o.lse[i] = 0.f, r.lse[i] = 0, masked_rows++;
  }
  if (GetParam().docs == Docs::orphans) {
    EXPECT_GT(masked_rows, 0) << n << ": the case should mask some rows";
  }
  expect_near_ref(o.out.data(), r.out, 1e-5, n + " out");
  expect_near_ref(o.lse.data(), r.lse, 1e-5, n + " lse");
  expect_near_ref(o.dq.data(), r.dq, 3e-5, n + " dq");
  expect_near_ref(o.dk.data(), r.dk, 3e-5, n + " dk");
  expect_near_ref(o.dv.data(), r.dv, 3e-5, n + " dv");
  for (size_t i = 0; i < r.out.size(); i++) {
    if (r.out[i] != 0 || r.dq[i] != 0) continue;  // rows that see no key
    EXPECT_EQ(o.out[i], 0.f) << n << " out " << i;
    EXPECT_EQ(o.dq[i], 0.f) << n << " dq " << i;
  }
}

// Awkward sizes: odd lengths, head sizes that are not powers of two, GQA, MQA,
// MHA, B = 2, offsets with Tq < Tk, several tiles per side, empty rows.
const Case kCases[] = {
    {"mha_b2_t37_hs6", 2, 37, 37, 2, 2, 6},
    {"gqa_t129_hs10", 1, 129, 129, 6, 2, 10},
    {"mqa_t37_hs24_noncausal", 1, 37, 37, 4, 1, 24, 0, false},
    {"chunk_offset30", 1, 19, 49, 6, 2, 16, 30},
    {"chunk_offset_multi_tile", 2, 100, 230, 4, 2, 8, 130},
    {"decode_one_query", 1, 1, 100, 4, 1, 16, 99},
    {"docs_causal_t129", 2, 129, 129, 6, 3, 10, 0, true, Docs::packed},
    {"docs_noncausal", 1, 70, 70, 2, 1, 24, 0, false, Docs::packed},
    {"docs_orphan_rows", 1, 61, 61, 6, 2, 6, 0, true, Docs::orphans},
    {"docs_orphan_offset", 1, 40, 90, 4, 2, 16, 50, true, Docs::orphans},
    {"negative_offset_masks_rows", 1, 20, 20, 2, 1, 8, -5},
    {"tiles_t300_hs16", 1, 300, 300, 4, 2, 16},
    {"tiles_t200_hs64", 1, 200, 200, 4, 2, 64, 0, true, Docs::none, 0.3f},
    {"tiles_t150_hs128", 1, 150, 150, 2, 1, 128},
    {"mqa_g8_t90_hs40", 1, 90, 90, 8, 1, 40},
    // sliding windows: within a tile, across tiles, shorter than a strip, with offsets (chunks, ring
    // segments: earlier keys without a causal mask), documents, and windows past which rows see nothing
    {"window_t129_w17", 2, 129, 129, 6, 2, 10, 0, true, Docs::none, 0.f, 17},
    {"window_t300_w100_tiles", 1, 300, 300, 4, 2, 16, 0, true, Docs::none, 0.f, 100},
    {"window_w1_self_only", 1, 37, 37, 2, 1, 8, 0, true, Docs::none, 0.f, 1},
    {"window_w3_docs", 1, 90, 90, 4, 2, 8, 0, true, Docs::packed, 0.f, 3},
    {"window_offset_chunk", 1, 50, 170, 4, 1, 16, 120, true, Docs::none, 0.f, 70},
    {"window_earlier_page_noncausal", 1, 64, 64, 4, 2, 16, 64, false, Docs::none, 0.f, 90},
    {"window_page_out_of_reach", 1, 32, 40, 2, 1, 8, 100, false, Docs::none, 0.f, 50},
    {"window_wider_than_t", 1, 45, 45, 2, 2, 6, 0, true, Docs::none, 0.f, 1000},
};
INSTANTIATE_TEST_SUITE_P(Cases, AttentionVsReference, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Central finite differences of sum(out * W) against the backward with dout = W.
void check_fd(const Case& c) {
  Inputs in = make_inputs(c, 5);
  Outputs o(in);
  run(in, o);  // in.dout plays W
  const std::vector<float> dq(o.dq.data(), o.dq.data() + in.nq());
  const std::vector<float> dk(o.dk.data(), o.dk.data() + in.nk());
  const std::vector<float> dv(o.dv.data(), o.dv.data() + in.nk());
  auto loss = [&] {
    Outputs f(in);
    run(in, f, false);
    return dot(f.out.data(), in.dout.data(), in.nq());
  };
  expect_fd_grad(in.q.data(), in.nq(), dq.data(), loss, "dq", 24, 1e-2f, 2e-2, 2e-3);
  expect_fd_grad(in.k.data(), in.nk(), dk.data(), loss, "dk", 24, 1e-2f, 2e-2, 2e-3);
  expect_fd_grad(in.v.data(), in.nk(), dv.data(), loss, "dv", 24, 1e-2f, 2e-2, 2e-3);
}

TEST(AttentionFiniteDifferences, GqaCausalDocs) {
  check_fd({"fd", 1, 29, 29, 4, 2, 10, 0, true, Docs::packed});
}
TEST(AttentionFiniteDifferences, ChunkWithOffset) { check_fd({"fd", 1, 19, 49, 3, 1, 16, 30}); }
TEST(AttentionFiniteDifferences, NonCausalMqa) { check_fd({"fd", 2, 13, 21, 2, 1, 6, 0, false}); }
TEST(AttentionFiniteDifferences, SlidingWindow) {
  check_fd({"fd", 1, 41, 41, 4, 2, 8, 0, true, Docs::none, 0.f, 9});
}

// Same bits whatever the thread count (the backward's step schedule promises it).
TEST(Attention, DeterministicAcrossThreadCounts) {
  Inputs in = make_inputs({"det", 1, 333, 333, 4, 2, 16, 0, true, Docs::packed});
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> results;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Outputs o(in);
    run(in, o);
    std::vector<float> all;
    for (Guarded* g : {&o.out, &o.lse, &o.dq, &o.dk, &o.dv})
      all.insert(all.end(), g->data(), g->data() + g->size());
    results.push_back(all);
  }
  omp_set_num_threads(saved);
  for (size_t i = 1; i < results.size(); i++)
    EXPECT_TRUE(std::memcmp(results[0].data(), results[i].data(), results[0].size() * 4) == 0)
        << "thread count changed the result";
}

TEST(Attention, EmptyKeysGiveZeroOutput) {
  Inputs in = make_inputs({"nokeys", 1, 5, 0, 2, 1, 8});
  Outputs o(in);
  run(in, o);
  o.check_guards();
  for (size_t i = 0; i < in.nq(); i++) EXPECT_EQ(o.out[i], 0.f);
  for (size_t i = 0; i < in.nq(); i++) EXPECT_EQ(o.dq[i], 0.f);
  for (size_t i = 0; i < o.lse.size(); i++) EXPECT_EQ(o.lse[i], -std::numeric_limits<float>::infinity());
}

// ---------------------------------------------------------------- op boundary errors
template <class F>
void expect_attention_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[attention]"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(AttentionErrors, ShapesDtypesAndBackend) {
  std::vector<float> buf(4096);
  std::vector<int32_t> ids(64);
  float* p = buf.data();
  Memory mem;
  Context ctx = cpu_context(mem);
  const Tensor q(p, {1, 5, 8, 16}), out(p, {1, 5, 8, 16}), lse(p, {1, 8, 5});
  const Tensor k(p, {1, 7, 2, 16}), v(p, {1, 7, 2, 16});
  AttentionParams ok;
  auto fwd = [&](Tensor o, Tensor l, Tensor qq, Tensor kk, Tensor vv, const AttentionParams& pp, Context& c) {
    return [=, &c] { attention_forward(o, l, qq, kk, vv, pp, c); };
  };
  expect_attention_error(
      fwd(out, lse, q, Tensor(p, {1, 7, 3, 16}), v, ok, ctx),
      "k has shape (1, 7, 3, 16) but q (1, 5, 8, 16) needs (B=1, *, NKV, HS=16) with NH=8");
  expect_attention_error(fwd(out, lse, q, Tensor(p, {2, 7, 2, 16}), v, ok, ctx), "k has shape (2, 7, 2, 16)");
  expect_attention_error(fwd(out, lse, q, k, Tensor(p, {1, 6, 2, 16}), ok, ctx), "v has shape (1, 6, 2, 16)");
  expect_attention_error(fwd(Tensor(p, {1, 5, 8, 8}), lse, q, k, v, ok, ctx), "out has shape (1, 5, 8, 8)");
  expect_attention_error(fwd(out, Tensor(p, {1, 5, 8}), q, k, v, ok, ctx), "lse has shape (1, 5, 8)");
  expect_attention_error(fwd(out, lse, Tensor(p, {5, 8, 16}), k, v, ok, ctx), "q has shape (5, 8, 16)");
  expect_attention_error(fwd(out, lse, Tensor(p, {1, 5, 8, 16}, DType::I32), k, v, ok, ctx), "q is I32");
  AttentionParams docs;
  docs.q_doc = Tensor(ids.data(), {1, 5}, DType::I32);
  expect_attention_error(fwd(out, lse, q, k, v, docs, ctx), "k_doc missing");
  docs.k_doc = Tensor(ids.data(), {1, 6}, DType::I32);
  expect_attention_error(fwd(out, lse, q, k, v, docs, ctx), "k_doc has shape (1, 6)");
  AttentionParams neg;
  neg.window = -1;
  expect_attention_error(fwd(out, lse, q, k, v, neg, ctx), "window -1");
  if (!cuda_built()) {  // a build without CUDA says so (with CUDA, tests/kernels/test_backend_ops.cpp runs
                        // it)
    Context gpu = ctx;
    gpu.backend = Backend::cuda;
    expect_error(fwd(out, lse, q, k, v, ok, gpu), {"attention", "CUDA backend is not built"});
  }
  expect_attention_error(
      [&] {
        attention_backward(out, Tensor(p, {1, 7, 2, 8}), k, out, q, k, v, out, lse, ok, ctx);
      },
      "dk has shape (1, 7, 2, 8)");
  expect_attention_error(
      [&] {
        attention_backward(out, k, k, out, q, k, v, out, Tensor(p, {8, 5}), ok, ctx);
      },
      "lse has shape (8, 5)");
}

}  // namespace
}  // namespace longctx::test
