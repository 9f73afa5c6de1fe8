// Emulated CUDA kernels against the CPU kernels: the bias of a linear layer and the bf16 conversion.
#include "harness.h"

// ------------------------------------------------------------------------------------------ linear bias
// y (N, C) += b: the same float addition as the CPU's, so bit-exact. db (C) += column sums of dy in double:
// against the CPU kernel (double, another order) and an 80-bit sum; deterministic; nothing past C or N * C
// written (guards after the arrays).
void test_bias() {
  const int64_t shapes[][2] = {{1, 1},   {1, 33},  {3, 31},   {31, 1},   {32, 32},  {33, 65},   {7, 257},
                               {130, 5}, {65, 97}, {1000, 3}, {2, 2049}, {257, 64}, {3001, 37}, {9, 1000}};
  const int G = 5;  // guard floats after every output
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (auto& sh : shapes) {
      const int64_t N = sh[0], C = sh[1];
      const std::string tag = fmt("N=%ld C=%ld %s", (long)N, (long)C, cap.name);
      F y0 = randv(N * C + G), b = randv(C, 2.f), dy = randv(N * C, 1.f, 0.25f);
      F got = y0, want = y0;
      cuda::bias_add(got.data(), b.data(), N, C, nullptr);
      cpu::bias_add(want.data(), b.data(), N, C);
      cmp("bias_add " + tag, got, want, 0, 0);  // the guards too: untouched on both
      F db0 = randv(C + G);
      for (int g = 0; g < G; g++) db0[size_t(C + g)] = -0.f;  // a stray db[c] += 0 past C shows: -0 + 0 = +0
      F db = db0, wdb = db0;
      cuda::bias_grad(db.data(), dy.data(), N, C, nullptr);
      cpu::bias_grad(wdb.data(), dy.data(), N, C);
      cmp("bias_grad " + tag, db, wdb, 0, 1e-6);
      expect(same_bits(db.data() + C, db0.data() + C, sizeof(float) * G),
             "bias_grad guards untouched " + tag);
      F ex(static_cast<size_t>(C)), dbz(static_cast<size_t>(C), 0.f);  // from 0: float(column sum) itself
      for (int64_t c = 0; c < C; c++) {
        long double s = 0;
        for (int64_t n = 0; n < N; n++) s += dy[size_t(n * C + c)];
        ex[size_t(c)] = float(s);
      }
      cuda::bias_grad(dbz.data(), dy.data(), N, C, nullptr);
      cmp("bias_grad(from 0, vs 80-bit sum) " + tag, dbz, ex, 0, 1.2e-7);  // at most an ulp
      F db2 = db0;
      cuda::bias_grad(db2.data(), dy.data(), N, C, nullptr);
      expect(same_bits(db.data(), db2.data(), sizeof(float) * size_t(C)), "bias_grad deterministic " + tag);
      // twice: accumulates
      cuda::bias_grad(db2.data(), dy.data(), N, C, nullptr);
      F w2 = wdb;
      cpu::bias_grad(w2.data(), dy.data(), N, C);
      cmp("bias_grad(accumulate twice) " + tag, db2, w2, 0, 1e-6);
    }
    // N or C zero: nothing is touched
    for (auto [N, C] : {std::pair<int64_t, int64_t>{0, 5}, {4, 0}}) {
      F y = randv(8), y0 = y, db = randv(8), db0 = db, dy = randv(8);
      cuda::bias_add(y.data(), db.data(), N, C, nullptr);
      cuda::bias_grad(db.data(), dy.data(), N, C, nullptr);
      expect(same_bits(y.data(), y0.data(), 32) && same_bits(db.data(), db0.data(), 32),
             fmt("bias_add/bias_grad N=%ld C=%ld: no-op %s", (long)N, (long)C, cap.name));
    }
  }
  set_caps(kCaps[0]);
}

// ------------------------------------------------------------------------------------------ bf16 convert
// convert_dtype's CUDA path (to_bf16 / from_bf16) against its CPU path (f32_to_bf16 / bf16_to_f32 per
// element, basic_ops.cpp): every bit pattern class (random bits: NaNs with payloads, denormals, infs),
// ties, odd sizes, the grid-stride loop (caps); guards after the outputs untouched.
void test_convert() {
  const int64_t sizes[] = {1, 2, 3, 31, 255, 256, 257, 511, 1000, 4097, 70001};
  const int G = 7;
  std::uniform_int_distribution<uint32_t> bits;
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (int64_t n : sizes) {
      const std::string tag = fmt("n=%ld %s", (long)n, cap.name);
      F x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; i++) {
        uint32_t u = bits(rng);
        switch (i % 4) {
          case 0: break;                                                         // any bits
          case 1: u = (u & 0xffff0000u) | 0x8000u; break;                        // an exact tie
          case 2: u = (u & 0x807fffffu) | (i % 8 < 4 ? 0 : 0x7f800000u); break;  // denormal / inf-NaN
          default: {
            float f = std::normal_distribution<float>(0.f, 10.f)(rng);
            std::memcpy(&u, &f, 4);
          }
        }
        std::memcpy(&x[size_t(i)], &u, 4);
      }
      std::vector<uint16_t> hb(size_t(n + G), 0xbeef), want(static_cast<size_t>(n));
      cuda::to_bf16(hb.data(), x.data(), n, nullptr);
      for (int64_t i = 0; i < n; i++) want[size_t(i)] = f32_to_bf16(x[size_t(i)]);
      int64_t bad = 0, bad_exact = 0, guard = 0;
      for (int64_t i = 0; i < n; i++) {
        bad += !bf16_same(hb[size_t(i)], want[size_t(i)]);
        bad_exact += hb[size_t(i)] != want[size_t(i)];  // NaN payloads too (the host path of the header)
      }
      for (int g = 0; g < G; g++) guard += hb[size_t(n + g)] != 0xbeef;
      hash_bytes(hb.data(), size_t(n) * 2);
      expect(bad == 0 && guard == 0, fmt("convert f32->bf16 %s (%ld differ, %ld guards written)", tag.c_str(),
                                         (long)bad, (long)guard));
      if (bad_exact && verbose)
        std::printf("info convert f32->bf16 %s: %ld NaN bit patterns differ from f32_to_bf16's\n",
                    tag.c_str(), (long)bad_exact);
      // bf16 -> f32: every 16-bit pattern shows up across the sizes (random halves)
      std::vector<uint16_t> h(static_cast<size_t>(n));
      for (auto& e : h) e = uint16_t(bits(rng));
      F back(size_t(n + G), 7.f), wb(static_cast<size_t>(n));
      cuda::from_bf16(back.data(), h.data(), n, nullptr);
      for (int64_t i = 0; i < n; i++) wb[size_t(i)] = bf16_to_f32(h[size_t(i)]);
      bad = 0, guard = 0;
      for (int64_t i = 0; i < n; i++) bad += !same_bits(&back[size_t(i)], &wb[size_t(i)], 4);  // NaNs too
      for (int g = 0; g < G; g++) guard += back[size_t(n + g)] != 7.f;
      hash_bytes(back.data(), size_t(n) * 4);
      expect(bad == 0 && guard == 0, fmt("convert bf16->f32 %s bit-exact (%ld differ, %ld guards written)",
                                         tag.c_str(), (long)bad, (long)guard));
    }
  }
  set_caps(kCaps[0]);
  // every 16-bit pattern up, and the round trip down again is the identity (NaNs stay NaN)
  {
    const int64_t n = 65536;
    std::vector<uint16_t> h(static_cast<size_t>(n)), h2(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) h[size_t(i)] = uint16_t(i);
    F f = nanv(n);
    cuda::from_bf16(f.data(), h.data(), n, nullptr);
    cuda::to_bf16(h2.data(), f.data(), n, nullptr);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !bf16_same(h[size_t(i)], h2[size_t(i)]);
    expect(bad == 0,
           fmt("convert bf16 -> f32 -> bf16 identity on all 2^16 patterns (%ld differ)", (long)bad));
  }
}
