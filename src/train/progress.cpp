#include "train/progress.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "core/check.h"
#include "core/memory.h"

namespace longctx {

Progress::Progress(int64_t total, bool tty, std::vector<double> work) : total_(total), tty_(tty) {
  if (work.empty()) work.assign(size_t(std::max<int64_t>(total, 0)), 1.0);
  CHECK(int64_t(work.size()) == total, "progress: ", work.size(), " step costs for ", total, " steps");
  left_.assign(work.size() + 1, 0.0);
  for (size_t s = work.size(); s-- > 0;) left_[s] = left_[s + 1] + work[s];
}

double Progress::eta_seconds(int64_t step) const {
  if (done_ <= 0 || step < 0 || step > total_) return 0;
  return seconds_ / done_ * left_[size_t(step)];
}

void Progress::update(int64_t step, double loss, double tok_per_s, int64_t device_bytes,
                      double step_seconds) {
  if (step >= 1 && step <= total_) done_ += left_[size_t(step - 1)] - left_[size_t(step)];
  seconds_ += step_seconds;
  const double eta = eta_seconds(step);
  const std::string mem = format_bytes(device_bytes);
  if (tty_)
    std::printf("\rstep %lld/%lld  loss %.4f  %.0f tok/s  mem %s  eta %.0fs   ", (long long)step,
                (long long)total_, loss, tok_per_s, mem.c_str(), eta);
  else
    std::printf("step %lld/%lld loss %.4f tok/s %.0f mem %s eta %.0fs\n", (long long)step, (long long)total_,
                loss, tok_per_s, mem.c_str(), eta);
  std::fflush(stdout);
}

void Progress::finish() {
  if (tty_) std::printf("\n");
}

double measure_peak_gflops() {
  const int n = 512;
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  double best = 1e30;
  for (int r = 0; r < 4; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f,
                c.data(), n);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * n * n * n / best / 1e9;
}

}  // namespace longctx
