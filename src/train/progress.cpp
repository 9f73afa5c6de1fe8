#include "train/progress.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "core/memory.h"

namespace longctx {

void Progress::update(int64_t step, double loss, double tok_per_s, int64_t device_bytes,
                      double step_seconds) {
  count_++;
  seconds_ += step_seconds;
  const double eta = seconds_ / double(count_) * double(total_ - step);
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
