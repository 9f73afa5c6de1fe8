// Times the CPU flash attention forward and backward (causal, GQA like the
// benchmark model: B = 1, NH = 8, NKV = 2) over sequence lengths and head sizes.
// FLOPs are counted for the causal half: forward 4 B NH HS T^2 / 2, backward 2.5x.
//   bench_attention [--T 1024,4096,16384] [--HS 16,64,128] [--NH 8] [--NKV 2] [--min-time 1.0]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "ops/attention.h"

using namespace longctx;

namespace {

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> r;
  for (const char* p = s; *p;) {
    char* end;
    r.push_back(std::strtoll(p, &end, 10));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p) break;
  }
  return r;
}

std::vector<float> random_vec(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Best of repeated runs, repeating until min_time seconds have passed (at least twice).
template <class F>
double best_seconds(F&& f, double min_time) {
  double best = 1e30, total = 0;
  for (int rep = 0; rep < 2 || total < min_time; rep++) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}

void bench_one(int64_t T, int64_t HS, int64_t NH, int64_t NKV, double min_time) {
  const int64_t B = 1;
  const Shape qs{B, T, NH, HS}, ks{B, T, NKV, HS};
  std::vector<float> q = random_vec(size_t(qs.numel()), 1), k = random_vec(size_t(ks.numel()), 2),
                     v = random_vec(size_t(ks.numel()), 3), dout = random_vec(size_t(qs.numel()), 4);
  std::vector<float> out(q.size()), lse(size_t(B * NH * T)), dq(q.size()), dk(k.size()), dv(v.size());
  Memory mem;
  Context ctx;
  ctx.mem = &mem;
  const AttentionParams p;  // causal, scale 1/sqrt(HS)
  const Tensor tq(q.data(), qs), tk(k.data(), ks), tv(v.data(), ks), tout(out.data(), qs),
      tlse(lse.data(), {B, NH, T});
  const double fwd = best_seconds([&] { attention_forward(tout, tlse, tq, tk, tv, p, ctx); }, min_time);
  const double bwd = best_seconds(
      [&] {
        attention_backward(Tensor(dq.data(), qs), Tensor(dk.data(), ks), Tensor(dv.data(), ks),
                           Tensor(dout.data(), qs), tq, tk, tv, tout, tlse, p, ctx);
      },
      min_time);
  const double flops = 4.0 * double(B * NH * HS) * double(T) * double(T) / 2.0;
  std::printf("%6lld %4lld %4lld %4lld | %10.2f %8.1f | %10.2f %8.1f | %10.2f\n", (long long)T, (long long)HS,
              (long long)NH, (long long)NKV, fwd * 1e3, flops / fwd * 1e-9, bwd * 1e3,
              2.5 * flops / bwd * 1e-9, (fwd + bwd) * 1e3);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> Ts{1024, 4096, 16384}, HSs{16, 64, 128};
  int64_t NH = 8, NKV = 2;
  double min_time = 1.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--T")
      Ts = parse_list(argv[i + 1]);
    else if (a == "--HS")
      HSs = parse_list(argv[i + 1]);
    else if (a == "--NH")
      NH = std::atoll(argv[i + 1]);
    else if (a == "--NKV")
      NKV = std::atoll(argv[i + 1]);
    else if (a == "--min-time")
      min_time = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  std::printf("flash attention, causal, B=1, %d threads\n", omp_get_max_threads());
  std::printf("%6s %4s %4s %4s | %10s %8s | %10s %8s | %10s\n", "T", "HS", "NH", "NKV", "fwd ms", "GFLOP/s",
              "bwd ms", "GFLOP/s", "total ms");
  for (int64_t HS : HSs)
    for (int64_t T : Ts) bench_one(T, HS, NH, NKV, min_time);
  return 0;
}
