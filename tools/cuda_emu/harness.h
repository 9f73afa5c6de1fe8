// The harness the emulated-kernel tests share (test.cpp, test_bias_convert.cpp, test_attention.cpp): random
// inputs, comparisons that count checks and failures, the output hash, the grid caps.
#pragma once
#include <cuda_bf16.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"
#include "stub/emu_device.h"

namespace longctx::cuda {
void block_reduce_test(float* osum, float* omax, double* osumd, const float* in, int blocks, int threads,
                       int reps);
}
namespace emu {
extern long gemm_calls;
extern int lt_bad;
}  // namespace emu

using namespace longctx;
using F = std::vector<float>;
inline const float NaN = std::numeric_limits<float>::quiet_NaN();
inline int failures = 0, checks = 0;
inline std::mt19937 rng(12345);
inline bool verbose = getenv("VERBOSE") != nullptr;

inline F randv(int64_t n, float sd = 1.f, float mean = 0.f) {
  std::normal_distribution<float> nd(mean, sd);
  F x(size_t(std::max<int64_t>(n, 0)));
  for (auto& e : x) e = nd(rng);
  return x;
}
inline F nanv(int64_t n) { return F(size_t(std::max<int64_t>(n, 0)), NaN); }

inline std::map<std::string, std::pair<double, double>> worst;
inline void note(const std::string& f, double a, double r) {
  auto& w = worst[f];
  w.first = std::max(w.first, a), w.second = std::max(w.second, r);
}

// got vs want: |d| <= atol + rtol |want|; NaN where want is not NaN fails (unwritten output).
inline uint64_t out_hash = 1469598103934665603ull;  // FNV-1a over every emulated output compared
inline void hash_bytes(const void* p, size_t n) {
  for (size_t i = 0; i < n; i++)
    out_hash = (out_hash ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
}
inline const double tol_scale = getenv("TOL_SCALE") ? atof(getenv("TOL_SCALE")) : 1.0;  // < 1: the margins
inline void cmp(const std::string& what, const float* got, const float* want, int64_t n, double atol,
                double rtol) {
  checks++;
  atol *= tol_scale, rtol *= tol_scale;
  hash_bytes(got, size_t(n) * 4);
  double worst_abs = 0, worst_rel = 0;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    const double g = got[i], w = want[i];
    if (std::isnan(w) && std::isnan(g)) continue;
    if (std::isinf(w) || std::isinf(g)) {
      if (g != w && bad++ < 3) std::printf("    %s [%ld]: got %.9g want %.9g\n", what.c_str(), (long)i, g, w);
      continue;
    }
    const double d = std::fabs(g - w);
    if (!(d <= atol + rtol * std::fabs(w))) {
      if (bad++ < 3) std::printf("    %s [%ld]: got %.9g want %.9g\n", what.c_str(), (long)i, g, w);
      continue;
    }
    worst_abs = std::max(worst_abs, d);
    if (w != 0) worst_rel = std::max(worst_rel, d / std::fabs(w));
  }
  if (bad) {
    failures++;
    std::printf("FAIL %s: %ld of %ld differ\n", what.c_str(), (long)bad, (long)n);
  } else if (verbose) {
    std::printf("ok   %s (n=%ld, max abs %.2e, max rel %.2e)\n", what.c_str(), (long)n, worst_abs, worst_rel);
  }
  // worst per kernel family, for the report
  std::string fam = what.substr(0, what.find(' '));
  note(fam, worst_abs, worst_rel);
}
inline void cmp(const std::string& what, const F& got, const F& want, double atol, double rtol) {
  if (got.size() != want.size()) {
    failures++;
    std::printf("FAIL %s: size\n", what.c_str());
    return;
  }
  cmp(what, got.data(), want.data(), int64_t(got.size()), atol, rtol);
}
inline void expect(bool ok, const std::string& what) {
  checks++;
  if (!ok)
    failures++, std::printf("FAIL %s\n", what.c_str());
  else if (verbose)
    std::printf("ok   %s\n", what.c_str());
}
inline bool same_bits(const void* a, const void* b, size_t bytes) { return !std::memcmp(a, b, bytes); }

__attribute__((format(printf, 1, 2))) inline std::string fmt(const char* f, ...) {
  char b[512];
  va_list ap;
  va_start(ap, f);
  vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}

struct Caps {
  int64_t gf, gr;
  const char* name;
};
inline const Caps kCaps[] = {{int64_t(65535) * 8, int64_t(1) << 30, "caps=real"}, {2, 3, "caps=2/3"}};
inline void set_caps(const Caps& c) { emu::cap_grid_for = c.gf, emu::cap_grid_rows = c.gr; }

// The groups, one function each (main in test.cpp runs them by name).
void test_block_reduce();
void test_bf16_exhaustive();
void test_elementwise();
void test_rmsnorm();
void test_embedding();
void test_rope();
void test_matmul();
void test_lm_head();
void test_bias();
void test_convert();
void test_attention();
uint16_t bf16_ref(float f);
bool bf16_same(uint16_t a, uint16_t b);
