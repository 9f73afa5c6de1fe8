// Emulated CUDA kernels (src/kernels/cuda/*.cu run on host fibers) against the CPU kernels: the block
// helpers, elementwise, RMSNorm, embedding, RoPE, GEMM and LM-head groups, and main. (Bias and bf16
// conversion: test_bias_convert.cpp; attention: test_attention.cpp.)
#include "harness.h"

// ------------------------------------------------------------------------------------------ block helpers
void test_block_reduce() {
  for (int threads : {32, 64, 96, 256, 1024}) {
    const int blocks = 2, reps = 3;
    const int64_t n = int64_t(blocks) * reps * threads;
    F in = randv(n);
    for (int64_t i = 0; i < n; i++)
      if ((i / threads) % reps == 1) in[size_t(i)] = -std::fabs(in[size_t(i)]) - 5.f;  // an all-negative set
    F os = nanv(2 * n), om = nanv(2 * n);
    std::vector<double> od(size_t(2 * n), NaN);
    cuda::block_reduce_test(os.data(), om.data(), od.data(), in.data(), blocks, threads, reps);
    F ws(size_t(2 * n)), wm(size_t(2 * n));
    bool uniform = true;
    double dmax = 0;
    for (int64_t s = 0; s < blocks * reps; s++) {
      double sum = 0, sabs = 0;
      float mx = -INFINITY, mn = INFINITY;
      for (int t = 0; t < threads; t++) {
        const float x = in[size_t(s * threads + t)];
        sum += x, sabs += std::fabs(x), mx = std::max(mx, x), mn = std::min(mn, x);
      }
      const size_t o0 = size_t(2 * s * threads);
      for (int t = 0; t < threads; t++) {
        const size_t o = size_t(2 * (s * threads + t));
        ws[o] = float(sum), ws[o + 1] = float(2 * sum), wm[o] = mx, wm[o + 1] = -mn;
        for (int k = 0; k < 2; k++) {
          uniform &= same_bits(&os[o + k], &os[o0 + k], 4) && same_bits(&om[o + k], &om[o0 + k], 4) &&
                     same_bits(&od[o + k], &od[o0 + k], 8);
          const double want = (k ? 5.0 : 3.0) * sum;
          dmax = std::max(dmax, std::fabs(od[o + k] - want) / ((k ? 5.0 : 3.0) * sabs));
          if (std::isnan(od[o + k])) dmax = INFINITY;
        }
      }
    }
    cmp(fmt("block_sum threads=%d", threads), os, ws, 1e-5, 1e-5);
    cmp(fmt("block_max threads=%d", threads), om, wm, 0, 0);
    expect(dmax < 1e-14, fmt("block_sum_d threads=%d (max rel err %.2e)", threads, dmax));
    note("block_sum_d", 0, dmax);
    expect(uniform, fmt("block reductions: every thread gets the same bits, threads=%d", threads));
  }
}

// ------------------------------------------------------------------------------------------ elementwise
uint16_t bf16_ref(float f) {  // independent bit-exact RNE, NaN -> some quiet NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  const uint32_t lo = u & 0xffffu, hi = u >> 16;
  uint32_t r = hi;
  if (lo > 0x8000u || (lo == 0x8000u && (hi & 1u))) r = hi + 1;  // carries into the exponent: inf is right
  return uint16_t(r);
}
bool bf16_same(uint16_t a, uint16_t b) {
  const bool na = (a & 0x7fff) > 0x7f80, nb = (b & 0x7fff) > 0x7f80;
  return na || nb ? na && nb : a == b;
}

void test_bf16_exhaustive() {
  // The real cuda_bf16.hpp __float2bfloat16_rn (its host path: the emulated kernel calls it) against two
  // bit-exact references, over every float. On sm_80+ the device path is cvt.rn.bf16.f32 (see report).
  int64_t bad_core = 0, bad_ref = 0, bad_back = 0;
  for (uint64_t i = 0; i <= 0xffffffffull; i++) {
    const uint32_t u = uint32_t(i);
    float f;
    std::memcpy(&f, &u, 4);
    const __nv_bfloat16 b = __float2bfloat16_rn(f);
    uint16_t h;
    std::memcpy(&h, &b, 2);
    if (!bf16_same(h, f32_to_bf16(f))) bad_core++;
    if (!bf16_same(h, bf16_ref(f))) bad_ref++;
    if ((i & 0xffff) == 0) {
      const uint16_t hh = uint16_t(i >> 16);
      __nv_bfloat16 bb;
      std::memcpy(&bb, &hh, 2);
      const float g = __bfloat162float(bb), w = bf16_to_f32(hh);
      if (!same_bits(&g, &w, 4)) bad_back++;
    }
  }
  expect(bad_core == 0,
         fmt("bf16 exhaustive: __float2bfloat16_rn == core f32_to_bf16 on all 2^32 floats (%ld differ)",
             (long)bad_core));
  expect(bad_ref == 0,
         fmt("bf16 exhaustive: __float2bfloat16_rn == independent RNE on all 2^32 floats (%ld differ)",
             (long)bad_ref));
  expect(bad_back == 0,
         fmt("bf16 exhaustive: __bfloat162float == core bf16_to_f32 on all 2^16 values (%ld differ)",
             (long)bad_back));
}

void test_elementwise() {
  const int64_t sizes[] = {1, 31, 255, 256, 257, 1000, 4099};
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (int64_t n : sizes) {
      const std::string tag = fmt("n=%ld %s", (long)n, cap.name);
      F a = randv(n), b = randv(n);
      {  // add, and add in place (out == a)
        F got = nanv(n), want(static_cast<size_t>(n));
        cuda::add(got.data(), a.data(), b.data(), n, nullptr);
        cpu::add(want.data(), a.data(), b.data(), n);
        cmp("add " + tag, got, want, 0, 0);
        F x = a;
        cuda::add(x.data(), x.data(), b.data(), n, nullptr);
        cmp("add(out==a) " + tag, x, want, 0, 0);
      }
      {
        F got = a, want = a;
        cuda::scale(got.data(), -1.7f, n, nullptr);
        cpu::scale(want.data(), -1.7f, n);
        cmp("scale " + tag, got, want, 0, 0);
      }
      {
        F got = a, want = a;
        cuda::axpy(got.data(), 0.37f, b.data(), n, nullptr);
        for (int64_t i = 0; i < n; i++) want[size_t(i)] += 0.37f * b[size_t(i)];
        cmp("axpy " + tag, got, want, 1e-7, 1e-7);
      }
      {
        F got = nanv(n), want(size_t(n), 2.5f);
        cuda::fill(got.data(), 2.5f, n, nullptr);
        cmp("fill " + tag, got, want, 0, 0);
      }
      {  // bf16 round trip through the kernels against the core conversion, specials mixed in
        F x = randv(n, 3.f);
        const float sp[] = {0.f,
                            -0.f,
                            INFINITY,
                            -INFINITY,
                            NaN,
                            1.00390625f /* 1 + 2^-8: a tie, even */,
                            1.01171875f /* 1 + 3*2^-8: a tie, rounds up */,
                            3.3895314e38f /* rounds to inf */,
                            1e-40f /* denormal */,
                            -1.17549435e-38f};
        for (int64_t i = 0; i < n && i < 10; i++) x[size_t(i * 97 % n)] = sp[i];
        std::vector<uint16_t> hb(size_t(n), 0xdead);
        cuda::to_bf16(hb.data(), x.data(), n, nullptr);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += !bf16_same(hb[size_t(i)], f32_to_bf16(x[size_t(i)]));
        expect(bad == 0, fmt("to_bf16 %s bit-exact vs f32_to_bf16 (%ld differ)", tag.c_str(), (long)bad));
        F back = nanv(n), want(static_cast<size_t>(n));
        cuda::from_bf16(back.data(), hb.data(), n, nullptr);
        for (int64_t i = 0; i < n; i++) want[size_t(i)] = bf16_to_f32(hb[size_t(i)]);
        bad = 0;
        for (int64_t i = 0; i < n; i++)
          bad += !(same_bits(&back[size_t(i)], &want[size_t(i)], 4) ||
                   (std::isnan(back[size_t(i)]) && std::isnan(want[size_t(i)])));
        expect(bad == 0, fmt("from_bf16 %s bit-exact vs bf16_to_f32 (%ld differ)", tag.c_str(), (long)bad));
      }
      {  // swiglu
        F g = randv(n, 3.f), u = randv(n), d = randv(n);
        F got = nanv(n), want(static_cast<size_t>(n));
        cuda::swiglu_forward(got.data(), g.data(), u.data(), n, nullptr);
        cpu::swiglu_forward(want.data(), g.data(), u.data(), n);
        cmp("swiglu_fwd " + tag, got, want, 1e-6, 1e-6);
        F dg = nanv(n), du = nanv(n), wdg(static_cast<size_t>(n)), wdu(static_cast<size_t>(n));
        cuda::swiglu_backward(dg.data(), du.data(), d.data(), g.data(), u.data(), n, nullptr);
        cpu::swiglu_backward(wdg.data(), wdu.data(), d.data(), g.data(), u.data(), n);
        cmp("swiglu_bwd dgate " + tag, dg, wdg, 1e-6, 1e-6);
        cmp("swiglu_bwd dup " + tag, du, wdu, 1e-6, 1e-6);
        F g2 = g, u2 = u;  // in place: dgate == gate, dup == up
        cuda::swiglu_backward(g2.data(), u2.data(), d.data(), g2.data(), u2.data(), n, nullptr);
        cmp("swiglu_bwd(in place) dgate " + tag, g2, wdg, 1e-6, 1e-6);
        cmp("swiglu_bwd(in place) dup " + tag, u2, wdu, 1e-6, 1e-6);
      }
      {  // adamw, a few steps
        F p = randv(n), m = randv(n, 0.1f), v = randv(n, 0.1f);
        for (auto& e : v) e = std::fabs(e);
        F p2 = p, m2 = m, v2 = v;
        for (int64_t step : {1, 2, 7}) {
          F g = randv(n);
          cuda::adamw_update(p.data(), g.data(), m.data(), v.data(), n, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step,
                             nullptr);
          cpu::adamw_update(p2.data(), g.data(), m2.data(), v2.data(), n, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                            step);
        }
        cmp("adamw p " + tag, p, p2, 1e-6, 1e-6);
        cmp("adamw m " + tag, m, m2, 1e-7, 1e-6);
        cmp("adamw v " + tag, v, v2, 1e-7, 1e-6);
      }
    }
  }
  set_caps(kCaps[0]);
  for (int64_t n : {1, 31, 1000, 1024, 1025, 4099, 70001, 300001}) {
    F x = randv(n);
    const double got = cuda::sum_squares(x.data(), n, nullptr), cw = cpu::sum_squares(x.data(), n);
    long double exact = 0;  // each square is exact in double; the sum in 80-bit
    for (float e : x) exact += (long double)(double(e) * e);
    const double rel = double(std::fabs((long double)got - exact) / exact),
                 crel = double(std::fabs((long double)cw - exact) / exact);
    note("sum_squares", 0, rel);
    if (verbose) std::printf("info sum_squares n=%ld: rel err cuda %.2e cpu %.2e\n", (long)n, rel, crel);
    expect(rel < 1e-13 && rel <= 4 * crel + 1e-15,
           fmt("sum_squares n=%ld rel err %.2e (cpu %.2e)", (long)n, rel, crel));
    hash_bytes(&got, 8);
    const double again = cuda::sum_squares(x.data(), n, nullptr);
    expect(same_bits(&got, &again, 8), fmt("sum_squares n=%ld deterministic", (long)n));
  }
}

// ------------------------------------------------------------------------------------------ rmsnorm
void test_rmsnorm() {
  const int64_t shapes[][2] = {{1, 1},     {3, 0},    {3, 31},   {7, 256}, {5, 257},
                               {70, 1000}, {130, 33}, {2, 2049}, {300, 5}};
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (auto& sh : shapes) {
      const int64_t N = sh[0], C = sh[1];
      const std::string tag = fmt("N=%ld C=%ld %s", (long)N, (long)C, cap.name);
      F x = randv(N * C, 2.f, 0.3f), w = randv(C, 0.5f, 1.f), dy = randv(N * C);
      F out = nanv(N * C), rstd = nanv(N), wout(size_t(N * C)), wr(static_cast<size_t>(N));
      cuda::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f, nullptr);
      cpu::rmsnorm_forward(wout.data(), wr.data(), x.data(), w.data(), N, C, 1e-5f);
      cmp("rmsnorm_fwd out " + tag, out, wout, 1e-6, 1e-6);
      cmp("rmsnorm_fwd rstd " + tag, rstd, wr, 0, 1e-7);
      for (int acc = 0; acc < 2; acc++)
        for (int with_dw = 0; with_dw < 2; with_dw++)
          for (int alias = 0; alias < 2; alias++) {
            const std::string t2 = fmt("%s acc=%d dw=%d alias=%d", tag.c_str(), acc, with_dw, alias);
            F din0 = randv(N * C), dw0 = randv(C);
            // reference: never aliased (the CPU kernel reads dy after writing dx)
            F wdin = acc ? din0 : F(size_t(N * C)), wdw = dw0;
            wdw.reserve(1);
            if (alias && acc) wdin = dy;  // dinp == dout: "accumulate" adds to dout itself
            cpu::rmsnorm_backward(wdin.data(), with_dw ? wdw.data() : nullptr, dy.data(), x.data(), w.data(),
                                  wr.data(), N, C, acc);
            F din = acc ? din0 : nanv(N * C), dw = dw0, dyc = dy;
            dw.reserve(1);  // a device buffer is never null, even when C == 0
            float* dinp = din.data();
            if (alias) dinp = dyc.data();
            cuda::rmsnorm_backward(dinp, with_dw ? dw.data() : nullptr, dyc.data(), x.data(), w.data(),
                                   wr.data(), N, C, acc, nullptr);
            cmp("rmsnorm_bwd dinp " + t2, dinp, wdin.data(), N * C, 1e-6, 1e-5);
            cmp("rmsnorm_bwd dw " + t2, dw, wdw, 1e-6, 1e-6);
          }
    }
  }
  set_caps(kCaps[0]);
}

// ------------------------------------------------------------------------------------------ embedding
void test_embedding() {
  const int64_t shapes[][3] = {{1, 1, 1},      {4, 0, 5},     {37, 100, 50},
                               {300, 257, 13}, {5, 64, 1000}, {64, 31, 3}};
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (auto& sh : shapes) {
      const int64_t N = sh[0], C = sh[1], V = sh[2];
      const std::string tag = fmt("N=%ld C=%ld V=%ld %s", (long)N, (long)C, (long)V, cap.name);
      std::vector<int32_t> tok(static_cast<size_t>(N));
      for (auto& t : tok) t = int32_t(rng() % uint32_t(V));
      F wte = randv(V * C), out = nanv(N * C), want(size_t(N * C));
      cuda::embedding_forward(out.data(), tok.data(), wte.data(), N, C, V, nullptr);
      cpu::embedding_forward(want.data(), tok.data(), wte.data(), N, C);
      cmp("embedding_fwd " + tag, out, want, 0, 0);
      F dout = randv(N * C), dw = randv(V * C), wdw = dw;
      cuda::embedding_backward(dw.data(), dout.data(), tok.data(), N, C, V, nullptr);
      cpu::embedding_backward(wdw.data(), dout.data(), tok.data(), N, C);
      cmp("embedding_bwd " + tag, dw, wdw, 0, 0);  // same order per column: exact
      // ids outside [0, V): zero rows forward, skipped backward
      auto bad = tok;
      for (int64_t n = 0; n < N; n += 3) bad[size_t(n)] = n % 2 ? int32_t(V) : -100;
      F out2 = nanv(N * C), want2(size_t(N * C));
      cuda::embedding_forward(out2.data(), bad.data(), wte.data(), N, C, V, nullptr);
      F dw2 = randv(V * C), wdw2 = dw2;
      cuda::embedding_backward(dw2.data(), dout.data(), bad.data(), N, C, V, nullptr);
      for (int64_t n = 0; n < N; n++) {
        const int32_t t = bad[size_t(n)];
        for (int64_t c = 0; c < C; c++) {
          want2[size_t(n * C + c)] = t >= 0 && t < V ? wte[size_t(t * C + c)] : 0.f;
          if (t >= 0 && t < V) wdw2[size_t(t * C + c)] += dout[size_t(n * C + c)];
        }
      }
      cmp("embedding_fwd(out-of-range ids) " + tag, out2, want2, 0, 0);
      cmp("embedding_bwd(out-of-range ids) " + tag, dw2, wdw2, 0, 0);
    }
  }
  set_caps(kCaps[0]);
}

// ------------------------------------------------------------------------------------------ rope
void test_rope() {
  const int64_t shapes[][3] = {{1, 1, 2}, {3, 2, 0}, {13, 3, 6}, {7, 4, 64}, {5, 3, 130}, {40, 2, 16}};
  const int64_t P = 50;
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (auto& sh : shapes) {
      const int64_t N = sh[0], H = sh[1], HS = sh[2], half = HS / 2;
      F cs(size_t(P * half)), sn(size_t(P * half));
      for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < half; i++) {
          const double a = double(p) * std::pow(10000.0, -2.0 * double(i) / double(HS));
          cs[size_t(p * half + i)] = float(std::cos(a)), sn[size_t(p * half + i)] = float(std::sin(a));
        }
      std::vector<int32_t> pos(static_cast<size_t>(N));
      for (auto& p : pos) p = int32_t(rng() % uint32_t(P));
      for (float sign : {1.f, -1.f}) {
        const std::string tag =
            fmt("N=%ld H=%ld HS=%ld sign=%g %s", (long)N, (long)H, (long)HS, sign, cap.name);
        F x = randv(N * H * HS), out = nanv(N * H * HS), want(size_t(N * H * HS));
        cuda::rope_apply(out.data(), x.data(), pos.data(), cs.data(), sn.data(), N, H, HS, sign, nullptr);
        cpu::rope_apply(want.data(), x.data(), pos.data(), cs.data(), sn.data(), N, H, HS, sign);
        cmp("rope " + tag, out, want, 1e-6, 1e-6);
        F y = x;
        cuda::rope_apply(y.data(), y.data(), pos.data(), cs.data(), sn.data(), N, H, HS, sign, nullptr);
        cmp("rope(in place) " + tag, y, want, 1e-6, 1e-6);
      }
    }
  }
  set_caps(kCaps[0]);
}

// ------------------------------------------------------------------------------------------ matmul
static float bf(float x) { return bf16_to_f32(f32_to_bf16(x)); }
static void ref_matmul(float* out, const float* inp, const float* w, int64_t N, int64_t IC, int64_t OC,
                       bool acc, bool b16) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OC; o++) {
      double s = 0;
      for (int64_t i = 0; i < IC; i++)
        s += b16 ? double(bf(inp[n * IC + i])) * bf(w[o * IC + i]) : double(inp[n * IC + i]) * w[o * IC + i];
      out[n * OC + o] = float(acc ? out[n * OC + o] + s : s);
    }
}
void test_matmul() {
  const int64_t shapes[][3] = {{1, 1, 1},   {3, 5, 7}, {17, 33, 9}, {64, 31, 65},
                               {2, 300, 3}, {5, 0, 4}, {0, 3, 4},   {4, 3, 0}};
  for (auto& sh : shapes)
    for (int b16 = 0; b16 < 2; b16++)
      for (int acc = 0; acc < 2; acc++) {
        const int64_t N = sh[0], IC = sh[1], OC = sh[2];
        const std::string tag =
            fmt("N=%ld IC=%ld OC=%ld acc=%d bf16=%d", (long)N, (long)IC, (long)OC, acc, b16);
        const double tol = b16 ? 1e-5 : 1e-5;  // the emulated Lt rounds to bf16 like the reference: same math
        F inp = randv(N * IC), w = randv(OC * IC), dout = randv(N * OC);
        F out0 = randv(N * OC), out = acc ? out0 : nanv(N * OC), want = out0;
        cuda::matmul_forward(out.data(), inp.data(), w.data(), N, IC, OC, acc, b16, nullptr);
        ref_matmul(want.data(), inp.data(), w.data(), N, IC, OC, acc, b16);
        cmp("matmul_fwd " + tag, out, want, tol, tol);
        if (!b16 && N && IC && OC) {  // and against the CPU kernel (OpenBLAS)
          F cw = out0;
          cpu::matmul_forward(cw.data(), inp.data(), w.data(), N, IC, OC, acc);
          cmp("matmul_fwd(vs cpu) " + tag, out, cw, 1e-5, 1e-5);
        }
        for (int which = 1; which < 4; which++) {  // 1 dinp only, 2 dw only, 3 both
          F din0 = randv(N * IC), dw0 = randv(OC * IC);
          F din = acc ? din0 : nanv(N * IC), dw = dw0;
          cuda::matmul_backward(which & 1 ? din.data() : nullptr, which & 2 ? dw.data() : nullptr,
                                dout.data(), inp.data(), w.data(), N, IC, OC, acc, b16, nullptr);
          // reference: dinp (N, IC) = dout @ w ; dw (OC, IC) += dout^T @ inp
          F wdin = din0, wdw = dw0;
          for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < IC; i++) {
              double s = 0;
              for (int64_t o = 0; o < OC; o++)
                s += b16 ? double(bf(dout[size_t(n * OC + o)])) * bf(w[size_t(o * IC + i)])
                         : double(dout[size_t(n * OC + o)]) * w[size_t(o * IC + i)];
              wdin[size_t(n * IC + i)] = float(acc ? wdin[size_t(n * IC + i)] + s : s);
            }
          for (int64_t o = 0; o < OC; o++)
            for (int64_t i = 0; i < IC; i++) {
              double s = 0;
              for (int64_t n = 0; n < N; n++)
                s += b16 ? double(bf(dout[size_t(n * OC + o)])) * bf(inp[size_t(n * IC + i)])
                         : double(dout[size_t(n * OC + o)]) * inp[size_t(n * IC + i)];
              wdw[size_t(o * IC + i)] += float(s);
            }
          const std::string t2 = fmt("%s which=%d", tag.c_str(), which);
          if (which & 1)
            cmp("matmul_bwd dinp " + t2, din, wdin, tol, tol);
          else
            cmp("matmul_bwd dinp(untouched) " + t2, din, acc ? din0 : nanv(N * IC), 0, 0);
          if (which & 2)
            cmp("matmul_bwd dw " + t2, dw, wdw, tol, tol);
          else
            cmp("matmul_bwd dw(untouched) " + t2, dw, dw0, 0, 0);
          if (!b16 && N && IC && OC && which == 3) {
            F cdin = din0, cdw = dw0;
            cpu::matmul_backward(cdin.data(), cdw.data(), dout.data(), inp.data(), w.data(), N, IC, OC, acc);
            cmp("matmul_bwd(vs cpu) dinp " + t2, din, cdin, 1e-5, 1e-5);
            cmp("matmul_bwd(vs cpu) dw " + t2, dw, cdw, 1e-5, 1e-5);
          }
        }
      }
}

// ------------------------------------------------------------------------------------------ lm head loss
void test_lm_head() {
  struct S {
    int64_t N, C, V, tile;
  };
  const S shapes[] = {{1, 1, 1, 1},     {5, 17, 3, 2},     {37, 64, 50, 16}, {9, 8, 1100, 4},
                      {6, 16, 2050, 6}, {20, 33, 1025, 7}, {8, 5, 7, 3}};
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (const S& s : shapes)
      for (int which = 0; which < 4; which++) {  // 0 loss only, 1 dhidden, 2 dw, 3 both
        const int64_t N = s.N, C = s.C, V = s.V;
        std::vector<int32_t> tg(static_cast<size_t>(N));
        int valid = 0;
        for (int64_t n = 0; n < N; n++) {
          tg[size_t(n)] = n % 4 == 2 ? -100 : int32_t(rng() % uint32_t(V));
          valid += tg[size_t(n)] >= 0;
        }
        if (s.N == 8) std::fill(tg.begin(), tg.end(), -100), valid = 0;  // every row ignored
        const double scale = 1.0 / std::max(valid, 1);
        const std::string tag = fmt("N=%ld C=%ld V=%ld tile=%ld which=%d %s", (long)N, (long)C, (long)V,
                                    (long)s.tile, which, cap.name);
        F h = randv(N * C), w = randv(V * C, 0.5f);
        F dh = nanv(N * C), dw0 = randv(V * C), dw = dw0, wdh(size_t(N * C), NaN), wdw = dw0;
        F lg = nanv(s.tile * V), wlg(size_t(s.tile * V));
        double* rl = static_cast<double*>(std::malloc(sizeof(double) * size_t(s.tile + 1)));  // rows, total
        std::memset(rl, 0xff, sizeof(double) * size_t(s.tile + 1));
        std::vector<double> wrl(size_t(s.tile));
        float* pdh = which & 1 ? dh.data() : nullptr;
        float* pdw = which & 2 ? dw.data() : nullptr;
        const double got = cuda::lm_head_loss(pdh, pdw, h.data(), w.data(), tg.data(), N, C, V, scale, s.tile,
                                              lg.data(), rl, false, nullptr);
        const double want =
            cpu::lm_head_loss(which & 1 ? wdh.data() : nullptr, which & 2 ? wdw.data() : nullptr, h.data(),
                              w.data(), tg.data(), N, C, V, scale, s.tile, wlg.data(), wrl.data());
        std::free(rl);
        hash_bytes(&got, 8);
        const double lerr = std::fabs(got - want) / std::max(std::fabs(want), 1e-30);
        note("lm_head_loss.loss", std::fabs(got - want), lerr);
        expect(lerr < 1e-6 && !std::isnan(got),
               fmt("lm_head_loss loss %s: got %.12g want %.12g", tag.c_str(), got, want));
        if (which & 1)
          cmp("lm_head_loss dhidden " + tag, dh, wdh, 1e-6, 1e-4);
        else
          expect(std::all_of(dh.begin(), dh.end(), [](float x) { return std::isnan(x); }),
                 "lm_head_loss dhidden untouched " + tag);
        if (which & 2)
          cmp("lm_head_loss dw " + tag, dw, wdw, 1e-6, 1e-4);
        else
          cmp("lm_head_loss dw(untouched) " + tag, dw, dw0, 0, 0);
      }
  }
  set_caps(kCaps[0]);
  // bf16 path against the CPU on bf16-rounded operands: plumbing, not bits
  {
    const int64_t N = 12, C = 40, V = 300, tile = 5;
    std::vector<int32_t> tg(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; n++) tg[size_t(n)] = n == 3 ? -100 : int32_t(rng() % V);
    F h = randv(N * C), w = randv(V * C, 0.5f), hb = h, wb = w;
    for (auto& e : hb) e = bf(e);
    for (auto& e : wb) e = bf(e);
    F dh = nanv(N * C), dw(size_t(V * C), 0.f), wdh(size_t(N * C)), wdw(size_t(V * C), 0.f),
      lg = nanv(tile * V), wlg(size_t(tile * V));
    std::vector<double> rl(tile + 1), wrl(tile);
    const double got = cuda::lm_head_loss(dh.data(), dw.data(), h.data(), w.data(), tg.data(), N, C, V,
                                          1.0 / 11, tile, lg.data(), rl.data(), true, nullptr);
    const double want = cpu::lm_head_loss(wdh.data(), wdw.data(), hb.data(), wb.data(), tg.data(), N, C, V,
                                          1.0 / 11, tile, wlg.data(), wrl.data());
    expect(std::fabs(got - want) < 1e-5 * std::fabs(want),
           fmt("lm_head_loss bf16 loss: got %.9g want %.9g", got, want));
    cmp("lm_head_loss(bf16) dhidden", dh, wdh, 2e-3, 2e-2);
    cmp("lm_head_loss(bf16) dw", dw, wdw, 2e-3, 2e-2);
  }
  // Precision with large logits: the gradient uses expf(z - float(lse)); float(lse) is off by up to half an
  // ulp of lse, a relative error of that size in every probability. Compared on the dlogits the logits
  // scratch still holds (one tile), against a double-precision softmax of the same logits.
  for (float shift : {0.f, 100.f, 1000.f, 10000.f}) {  // every logit + shift: same softmax, lse + shift
    const int64_t N = 4, C = 16, V = 500, tile = 4;
    std::vector<int32_t> tg = {1, 7, 100, 499};
    F h = randv(N * C), w = randv(V * C);
    for (int64_t r = 0; r < N; r++) h[size_t(r * C)] = shift;
    for (int64_t v = 0; v < V; v++) w[size_t(v * C)] = 1.f;
    F dh = nanv(N * C), lg = nanv(tile * V);
    std::vector<double> rl(tile + 1);
    cuda::lm_head_loss(dh.data(), nullptr, h.data(), w.data(), tg.data(), N, C, V, 1.0, tile, lg.data(),
                       rl.data(), false, nullptr);
    F cdh(size_t(N * C)), clg(size_t(tile * V));
    std::vector<double> crl(tile);
    cpu::lm_head_loss(cdh.data(), nullptr, h.data(), w.data(), tg.data(), N, C, V, 1.0, tile, clg.data(),
                      crl.data());
    double worst = 0, cworst = 0, lse_max = 0;
    for (int64_t r = 0; r < N; r++) {
      std::vector<double> z(V);
      double mx = -INFINITY, s = 0;
      for (int64_t v = 0; v < V; v++) {
        double a = 0;
        for (int64_t c = 0; c < C; c++) a += double(h[size_t(r * C + c)]) * w[size_t(v * C + c)];
        z[size_t(v)] = a, mx = std::max(mx, a);
      }
      for (double a : z) s += std::exp(a - mx);
      const double lse = mx + std::log(s);
      lse_max = std::max(lse_max, std::fabs(lse));
      for (int64_t v = 0; v < V; v++) {
        const double p = std::exp(z[size_t(v)] - lse), want = p - (v == tg[size_t(r)]);
        if (p > 1e-3 && v != tg[size_t(r)]) {
          worst = std::max(worst, std::fabs(lg[size_t(r * V + v)] - want) / p);
          cworst = std::max(cworst, std::fabs(clg[size_t(r * V + v)] - want) / p);
        }
      }
    }
    std::printf(
        "info lm_head_loss logits shifted by %g (|lse| up to %.0f): max rel err of dlogits (p > 1e-3, "
        "non-target) = %.2e (cpu %.2e)\n",
        shift, lse_max, worst, cworst);
  }
}

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  emu::policy = getenv("EMU_POLICY") ? atoi(getenv("EMU_POLICY")) : 0;
  auto run = [&](const char* name, void (*f)()) {
    if (!only.empty() && only.find(name) == std::string::npos) return;
    const int f0 = failures, e0 = emu::errors;
    f();
    std::printf("%-16s %s (%d failures, %d emulation errors)\n", name,
                failures == f0 && emu::errors == e0 ? "ok" : "FAILED", failures - f0, emu::errors - e0);
  };
  run("block_reduce", test_block_reduce);
  run("elementwise", test_elementwise);
  run("rmsnorm", test_rmsnorm);
  run("embedding", test_embedding);
  run("rope", test_rope);
  run("matmul", test_matmul);
  run("lm_head", test_lm_head);
  run("bias", test_bias);
  run("convert", test_convert);
  run("attention", test_attention);
  if (only.find("bf16x") != std::string::npos) run("bf16x", test_bf16_exhaustive);
  std::printf("worst errors per family:\n");
  for (auto& [k, v] : worst) std::printf("  %-28s abs %.2e rel %.2e\n", k.c_str(), v.first, v.second);
  std::printf("output hash %016lx\n", (unsigned long)out_hash);
  std::printf(
      "%s policy=%d: %d checks, %d failures, %d emulation errors, %d bad cuBLASLt calls, %ld launches, %ld "
      "gemms\n",
      failures || emu::errors || emu::lt_bad ? "FAILED" : "ALL OK", emu::policy, checks, failures,
      emu::errors, emu::lt_bad, emu::launches, emu::gemm_calls);
  return failures || emu::errors || emu::lt_bad;
}
