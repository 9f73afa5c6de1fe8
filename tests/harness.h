// Shared test helpers: seeded random data, buffers with guard bytes around
// them, comparison against double references, central finite differences.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/context.h"

namespace longctx::test {

// f must throw longctx::Error with a one-line message containing every needle.
inline void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected longctx::Error";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& n : needles)
      EXPECT_NE(m.find(n), std::string::npos) << "'" << n << "' not in: " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "multi-line message: " << m;
  }
}

inline std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// A float buffer with guard words on both sides; check() fails the test if a
// kernel wrote outside its output.
class Guarded {
 public:
  static constexpr size_t kGuard = 64;
  static constexpr uint32_t kPattern = 0x7fc0deadu;
  explicit Guarded(size_t n, float fill = 0.f) : n_(n), v_(n + 2 * kGuard) {
    uint32_t* u = reinterpret_cast<uint32_t*>(v_.data());
    for (size_t i = 0; i < kGuard; i++) u[i] = u[kGuard + n + i] = kPattern;
    for (size_t i = 0; i < n; i++) v_[kGuard + i] = fill;
  }
  float* data() { return v_.data() + kGuard; }
  const float* data() const { return v_.data() + kGuard; }
  size_t size() const { return n_; }
  float& operator[](size_t i) { return data()[i]; }
  Tensor t(Shape s) {
    EXPECT_EQ(size_t(s.numel()), n_);
    return Tensor(data(), s);
  }
  void check(const char* what) const {
    const uint32_t* u = reinterpret_cast<const uint32_t*>(v_.data());
    for (size_t i = 0; i < kGuard; i++) {
      ASSERT_EQ(u[i], kPattern) << what << ": write before the buffer at -" << (kGuard - i);
      ASSERT_EQ(u[kGuard + n_ + i], kPattern) << what << ": write past the buffer at +" << i;
    }
  }

 private:
  size_t n_;
  std::vector<float> v_;
};

// max |a-e| / (atol + rtol*|e|) must be <= 1
inline void expect_close(const float* a, const double* e, size_t n, double rtol, double atol,
                         const char* what) {
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < n; i++) {
    const double d = std::abs(double(a[i]) - e[i]);
    const double r = d == 0 ? 0 : d / (atol + rtol * std::abs(e[i]));
    if (!(r <= worst)) worst = r, wi = i;  // NaN-propagating
  }
  EXPECT_LE(worst, 1.0) << what << ": worst at " << wi << " got " << a[wi] << " want " << e[wi];
}
inline void expect_close(const float* a, const std::vector<double>& e, double rtol, double atol,
                         const char* what) {
  expect_close(a, e.data(), e.size(), rtol, atol, what);
}

// Central finite differences of a scalar function of x at `count` random
// indices, compared with the analytic gradient.
inline void expect_fd_grad(float* x, size_t n, const float* analytic, const std::function<double()>& f,
                           const char* what, size_t count = 24, float h = 1e-2f, double rtol = 2e-2,
                           double atol = 2e-3, uint64_t seed = 7) {
  std::mt19937_64 g(seed);
  for (size_t c = 0; c < std::min(count, n); c++) {
    const size_t i = count >= n ? c : size_t(g() % n);
    const float x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    const double fd = (fp - fm) / (2.0 * double(h));
    EXPECT_NEAR(analytic[i], fd, atol + rtol * std::abs(fd)) << what << " index " << i;
  }
}

// Weighted sum used as the scalar loss for gradient checks.
inline double dot(const float* a, const float* w, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += double(a[i]) * double(w[i]);
  return s;
}

inline Context cpu_context(Memory& mem) {
  Context c;
  c.mem = &mem;
  return c;
}

}  // namespace longctx::test
