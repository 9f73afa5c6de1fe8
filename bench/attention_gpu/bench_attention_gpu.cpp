// cuDNN fused attention on the GPU (kernels/cuda/cudnn): a correctness check at T ~ 1K against a host
// double-precision reference, then causal bf16 timings, B = 1, C = NH * HS = 2048, over T.
// Compiled as CUDA (its CMakeLists sets the language): the inputs are filled on the device by a hash kernel.
//
// FLOPs are counted for the causal half: forward 4 * B * NH * T^2 * HS / 2 (two matmuls), backward 2.5x the
// forward (five matmuls), so forward + backward = 3.5x the forward (the count NVIDIA's and torch's attention
// benchmarks use).
//
//   bench_attention_gpu [--T 8192,16384,32768,65536,131072] [--head-dims 128,64] [--no-gqa] [--reps 5]
//                       [--warmup 2] [--max-seconds 50] [--json FILE] [--deterministic] [--no-check]
//                       [--check-only]
// Exit: 0 all good; 1 the correctness check failed (the timings still run); 2 an error (a message says
// which).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "kernels/cuda/cudnn/attention_cudnn.h"

using namespace longctx;
using longctx::cuda::SdpaDims;

namespace {

void cu_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) FAIL("CUDA ", what, ": ", cudaGetErrorString(e));
}
#define CU(x) cu_check((x), #x)

// ---- device buffers and random fill ----

struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t n) : bytes(n) {
    if (n) cu_check(cudaMalloc(&p, n), str_cat("cudaMalloc(", n, " bytes)").c_str());
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

__host__ __device__ inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// x[i] = uniform in [-amp, amp), a hash of (seed, i)
__global__ void fill_uniform_bf16(__nv_bfloat16* x, int64_t n, uint64_t seed, float amp) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    uint64_t h = mix64(seed * 0x100000001B3ull + uint64_t(i));
    float u = float(h >> 40) * (1.0f / 16777216.0f);
    x[i] = __float2bfloat16((2.0f * u - 1.0f) * amp);
  }
}

void fill(const DevBuf& b, int64_t n, uint64_t seed) {
  CHECK(size_t(n) * 2 <= b.bytes, "fill past the buffer");
  int64_t blocks = std::min<int64_t>((n + 255) / 256, 8192);
  // amp sqrt(3): unit variance, so scale * q.k has unit variance too
  fill_uniform_bf16<<<unsigned(blocks), 256>>>(b.as<__nv_bfloat16>(), n, seed, 1.7320508f);
  CU(cudaGetLastError());
}

float bf16_to_float(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::vector<double> bf16_to_host(const DevBuf& b, int64_t n) {
  std::vector<uint16_t> raw(static_cast<size_t>(n));
  CU(cudaMemcpy(raw.data(), b.p, size_t(n) * 2, cudaMemcpyDeviceToHost));
  std::vector<double> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) r[size_t(i)] = bf16_to_float(raw[size_t(i)]);
  return r;
}

std::vector<double> f32_to_host(const DevBuf& b, int64_t n) {
  std::vector<float> raw(static_cast<size_t>(n));
  CU(cudaMemcpy(raw.data(), b.p, size_t(n) * 4, cudaMemcpyDeviceToHost));
  return std::vector<double>(raw.begin(), raw.end());
}

// ---- host reference (double), layouts as the op's: (B, T, H, HS), lse (B, NH, Tq) ----

struct Ref {
  std::vector<double> out, lse, dq, dk, dv;
};

Ref reference(const SdpaDims& d, bool causal, double scale, const std::vector<double>& q,
              const std::vector<double>& k, const std::vector<double>& v, const std::vector<double>& dout) {
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, NH = d.NH, NKV = d.NKV, HS = d.HS, rep = NH / NKV;
  Ref r;
  r.out.assign(size_t(B * Tq * NH * HS), 0.0);
  r.dq.assign(r.out.size(), 0.0);
  r.lse.assign(size_t(B * NH * Tq), 0.0);
  r.dk.assign(size_t(B * Tk * NKV * HS), 0.0);
  r.dv.assign(r.dk.size(), 0.0);
  auto qi = [&](int64_t b, int64_t t, int64_t h) { return size_t(((b * Tq + t) * NH + h) * HS); };
  auto ki = [&](int64_t b, int64_t t, int64_t g) { return size_t(((b * Tk + t) * NKV + g) * HS); };
  // one task per (b, kv head): it alone writes that head's dk/dv and its query heads' rows
  auto task = [&](int64_t b, int64_t g) {
    std::vector<double> s(static_cast<size_t>(Tk)), o(static_cast<size_t>(HS)),
        dqrow(static_cast<size_t>(HS));
    for (int64_t h = g * rep; h < (g + 1) * rep; h++) {
      for (int64_t i = 0; i < Tq; i++) {
        int64_t jend = causal ? Tk - Tq + i + 1 : Tk;  // keys [0, jend)
        const double* qr = &q[qi(b, i, h)];
        double m = -INFINITY;
        for (int64_t j = 0; j < jend; j++) {
          const double* kr = &k[ki(b, j, g)];
          double acc = 0;
          for (int64_t c = 0; c < HS; c++) acc += qr[c] * kr[c];
          s[size_t(j)] = acc * scale;
          m = std::max(m, s[size_t(j)]);
        }
        double l = 0;
        for (int64_t j = 0; j < jend; j++) l += std::exp(s[size_t(j)] - m);
        double lse = m + std::log(l);
        r.lse[size_t((b * NH + h) * Tq + i)] = lse;
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < jend; j++) {
          s[size_t(j)] = std::exp(s[size_t(j)] - lse);  // now p
          const double* vr = &v[ki(b, j, g)];
          for (int64_t c = 0; c < HS; c++) o[size_t(c)] += s[size_t(j)] * vr[c];
        }
        const double* dor = &dout[qi(b, i, h)];
        double D = 0;
        for (int64_t c = 0; c < HS; c++) {
          r.out[qi(b, i, h) + size_t(c)] = o[size_t(c)];
          D += dor[c] * o[size_t(c)];
        }
        std::fill(dqrow.begin(), dqrow.end(), 0.0);
        for (int64_t j = 0; j < jend; j++) {
          const double* vr = &v[ki(b, j, g)];
          const double* kr = &k[ki(b, j, g)];
          double p = s[size_t(j)], dpj = 0;
          for (int64_t c = 0; c < HS; c++) dpj += dor[c] * vr[c];
          double ds = p * (dpj - D) * scale;
          double* dkr = &r.dk[ki(b, j, g)];
          double* dvr = &r.dv[ki(b, j, g)];
          for (int64_t c = 0; c < HS; c++) {
            dqrow[size_t(c)] += ds * kr[c];
            dkr[c] += ds * qr[c];
            dvr[c] += p * dor[c];
          }
        }
        for (int64_t c = 0; c < HS; c++) r.dq[qi(b, i, h) + size_t(c)] = dqrow[size_t(c)];
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t b = 0; b < B; b++)
    for (int64_t g = 0; g < NKV; g++) pool.emplace_back(task, b, g);
  for (auto& t : pool) t.join();
  return r;
}

// ||x - ref|| / ||ref||; NaN when x holds a non-finite value
double rel_err(const std::vector<double>& x, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); i++) {
    if (!std::isfinite(x[i])) return NAN;
    num += (x[i] - ref[i]) * (x[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

double max_abs_err(const std::vector<double>& x, const std::vector<double>& ref) {
  double m = 0;
  for (size_t i = 0; i < x.size(); i++) m = std::max(m, std::fabs(x[i] - ref[i]));
  return m;
}

struct CheckCase {
  SdpaDims d;
  bool deterministic;
  const char* what;
};

constexpr double kTol = 2e-2;

bool check_case(const CheckCase& c, bool first);

// Runs the cases; prints a line each; returns whether all passed.
bool run_check() {
  const std::vector<CheckCase> cases = {
      {{2, 1024, 1024, 4, 4, 128}, false, "T=1024"},
      {{2, 1024, 1024, 4, 2, 128}, false, "T=1024 GQA"},
      {{1, 1024, 1024, 8, 8, 64}, false, "T=1024 HS=64"},
      {{2, 1088, 1088, 4, 4, 128}, false, "T=1088 (T%128==64)"},
      {{2, 1088, 1088, 4, 1, 64}, false, "T=1088 GQA HS=64"},
      {{2, 256, 1088, 4, 2, 128}, false, "Tq=256<Tk bottom-right GQA"},
      {{2, 1088, 1088, 4, 2, 128}, true, "T=1088 GQA deterministic"},
  };
  std::printf("correctness (causal, bf16 vs host double; relative-norm errors, fail above %.0e or on NaN):\n",
              kTol);
  std::printf("  %-28s %3s %5s %5s %3s %4s %3s  %9s %9s %9s %9s %9s  %s\n", "case", "B", "Tq", "Tk", "NH",
              "NKV", "HS", "out", "lse", "dq", "dk", "dv", "");
  bool all_ok = true;
  for (size_t ci = 0; ci < cases.size(); ci++) {
    const CheckCase& c = cases[ci];
    try {
      all_ok = check_case(c, ci == 0) && all_ok;
    } catch (const std::exception& e) {
      std::printf("  %-28s ERROR: %s\n", c.what, e.what());
      std::fflush(stdout);
      all_ok = false;
    }
  }
  std::printf("correctness: %s\n", all_ok ? "PASS" : "FAIL");
  return all_ok;
}

// One case: prints its line, returns whether it passed; throws on a cuDNN or CUDA error.
bool check_case(const CheckCase& c, bool first) {
  const SdpaDims& d = c.d;
  const int64_t nq = d.B * d.Tq * d.NH * d.HS, nk = d.B * d.Tk * d.NKV * d.HS, nl = d.B * d.NH * d.Tq;
  const float scale = 1.0f / std::sqrt(float(d.HS));
  DevBuf q(size_t(nq) * 2), k(size_t(nk) * 2), v(size_t(nk) * 2), o(size_t(nq) * 2), dout(size_t(nq) * 2);
  DevBuf dq(size_t(nq) * 2), dk(size_t(nk) * 2), dv(size_t(nk) * 2), lse(size_t(nl) * 4);
  fill(q, nq, 11);
  fill(k, nk, 12);
  fill(v, nk, 13);
  fill(dout, nq, 14);
  // NaN-filled outputs (0xFFFF is a bf16 NaN): a part the call does not write shows up
  CU(cudaMemset(o.p, 0xFF, o.bytes));
  CU(cudaMemset(dq.p, 0xFF, dq.bytes));
  CU(cudaMemset(dk.p, 0xFF, dk.bytes));
  CU(cudaMemset(dv.p, 0xFF, dv.bytes));
  CU(cudaMemset(lse.p, 0xFF, lse.bytes));
  size_t ws = std::max(cuda::cudnn_attention_workspace_bytes(d, true, false, false),
                       cuda::cudnn_attention_workspace_bytes(d, true, true, c.deterministic));
  if (first) {
    // the sizing without `deterministic` covers both backward graphs
    size_t both = cuda::cudnn_attention_workspace_bytes(d, true, true);
    CHECK(both >= cuda::cudnn_attention_workspace_bytes(d, true, true, false) &&
              both >= cuda::cudnn_attention_workspace_bytes(d, true, true, true),
          "cudnn_attention_workspace_bytes(d, causal, backward) is below a backward graph's need");
  }
  DevBuf work(ws);
  cuda::cudnn_attention_forward(o.p, lse.as<float>(), q.p, k.p, v.p, d, true, scale, work.p, nullptr);
  CU(cudaDeviceSynchronize());
  cuda::cudnn_attention_backward(dq.p, dk.p, dv.p, dout.p, q.p, k.p, v.p, o.p, lse.as<float>(), d, true,
                                 scale, c.deterministic, work.p, nullptr);
  CU(cudaDeviceSynchronize());

  auto hq = bf16_to_host(q, nq), hk = bf16_to_host(k, nk), hv = bf16_to_host(v, nk);
  auto hdo = bf16_to_host(dout, nq);
  Ref ref = reference(d, true, double(scale), hq, hk, hv, hdo);
  auto ho = bf16_to_host(o, nq), hdq = bf16_to_host(dq, nq), hdk = bf16_to_host(dk, nk);
  auto hdv = bf16_to_host(dv, nk), hl = f32_to_host(lse, nl);
  double e[5] = {rel_err(ho, ref.out), rel_err(hl, ref.lse), rel_err(hdq, ref.dq), rel_err(hdk, ref.dk),
                 rel_err(hdv, ref.dv)};
  bool ok = true;
  for (double x : e) ok = ok && std::isfinite(x) && x <= kTol;
  std::string note = ok ? "ok" : "FAIL";
  if (std::isfinite(e[1])) {
    note += str_cat(" (lse max abs err ", max_abs_err(hl, ref.lse), ")");
    if (e[1] > kTol) {
      // a base-2 lse would be the reference times log2(e): say so if it fits better
      std::vector<double> l2(ref.lse);
      for (double& x : l2) x *= 1.4426950408889634;
      if (rel_err(hl, l2) < e[1])
        note += str_cat(" lse looks base-2 (rel err vs log2: ", rel_err(hl, l2), ")");
    }
  }
  if (c.deterministic) {
    // the deterministic algorithm must give the same bits twice
    std::vector<uint16_t> run1(static_cast<size_t>(nq)), run2(static_cast<size_t>(nq));
    CU(cudaMemcpy(run1.data(), dq.p, size_t(nq) * 2, cudaMemcpyDeviceToHost));
    cuda::cudnn_attention_backward(dq.p, dk.p, dv.p, dout.p, q.p, k.p, v.p, o.p, lse.as<float>(), d, true,
                                   scale, true, work.p, nullptr);
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(run2.data(), dq.p, size_t(nq) * 2, cudaMemcpyDeviceToHost));
    bool same = run1 == run2;
    note += same ? " dq bitwise repeatable" : " dq NOT repeatable";
    ok = ok && same;
  }
  std::printf("  %-28s %3lld %5lld %5lld %3lld %4lld %3lld  %9.2e %9.2e %9.2e %9.2e %9.2e  %s\n", c.what,
              (long long)d.B, (long long)d.Tq, (long long)d.Tk, (long long)d.NH, (long long)d.NKV,
              (long long)d.HS, e[0], e[1], e[2], e[3], e[4], note.c_str());
  std::fflush(stdout);
  return ok;
}

// ---- timing ----

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> r;
  const char* p = s;
  while (*p) {
    char* end = nullptr;
    long long x = std::strtoll(p, &end, 10);
    if (end == p) FAIL("bad number list '", s, "'");
    r.push_back(x);
    p = *end == ',' ? end + 1 : end;
  }
  return r;
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  size_t n = x.size();
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

using Clock = std::chrono::steady_clock;
double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Config {
  int64_t HS, NH, NKV;
};

struct Opts {
  std::vector<int64_t> T = {8192, 16384, 32768, 65536, 131072};
  std::vector<int64_t> head_dims = {128, 64};
  bool gqa = true, deterministic = false, check = true, check_only = false;
  int reps = 5, warmup = 2;
  double max_seconds = 50;
  std::string json;
};

int run(int argc, char** argv) {
  Opts o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) FAIL("missing value after ", a);
      return argv[++i];
    };
    if (a == "--T")
      o.T = parse_list(next());
    else if (a == "--head-dims")
      o.head_dims = parse_list(next());
    else if (a == "--no-gqa")
      o.gqa = false;
    else if (a == "--reps")
      o.reps = std::max(1, std::atoi(next()));
    else if (a == "--warmup")
      o.warmup = std::max(0, std::atoi(next()));
    else if (a == "--max-seconds")
      o.max_seconds = std::atof(next());
    else if (a == "--json")
      o.json = next();
    else if (a == "--deterministic")
      o.deterministic = true;
    else if (a == "--no-check")
      o.check = false;
    else if (a == "--check-only")
      o.check_only = true;
    else if (a == "-h" || a == "--help") {
      std::printf(
          "bench_attention_gpu [--T 8192,...] [--head-dims 128,64] [--no-gqa] [--reps 5] [--warmup 2]\n"
          "                    [--max-seconds 50] [--json FILE] [--deterministic] [--no-check] "
          "[--check-only]\n");
      return 0;
    } else
      FAIL("unknown argument ", a, " (see --help)");
  }
  const auto t0 = Clock::now();

  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  if (e != cudaSuccess || ndev == 0)
    FAIL("no usable CUDA device: ", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  cudaDeviceProp prop{};
  CU(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs, %.0f GiB); %s\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, double(prop.totalGlobalMem) / (1 << 30),
              cuda::cudnn_attention_versions().c_str());
  std::fflush(stdout);

  bool check_ok = true;
  if (o.check) check_ok = run_check();
  std::printf("check took %.1f s\n", secs_since(t0));
  if (o.check_only) return check_ok ? 0 : 1;

  FILE* json = nullptr;
  if (!o.json.empty()) {
    json = std::fopen(o.json.c_str(), "w");
    if (!json) FAIL("cannot write ", o.json);
  }
  std::vector<Config> configs;
  for (int64_t hs : o.head_dims) {
    if (2048 % hs != 0) FAIL("head dim ", hs, " does not divide C = 2048");
    configs.push_back({hs, 2048 / hs, 2048 / hs});
  }
  if (o.gqa && !o.head_dims.empty()) {
    int64_t hs = o.head_dims.front();
    configs.push_back({hs, 2048 / hs, 2048 / hs / 4});
  }

  std::printf(
      "\ncausal bf16 attention, B=1, C=2048, %s backward; median of %d after %d warm-up; budget %.0f s\n"
      "FLOPs (causal): fwd = 4*B*NH*T^2*HS/2, bwd = 2.5 x fwd, fwd+bwd = 3.5 x fwd\n",
      o.deterministic ? "deterministic" : "non-deterministic", o.reps, o.warmup, o.max_seconds);
  std::printf("%8s %4s %4s %4s %10s %12s %10s %14s %10s %9s\n", "T", "HS", "NH", "NKV", "fwd_ms", "fwdbwd_ms",
              "fwd_TF/s", "fwdbwd_TF/s", "build_s", "ws_MiB");
  bool timing_error = false;
  cudaEvent_t ev0, ev1;
  CU(cudaEventCreate(&ev0));
  CU(cudaEventCreate(&ev1));
  // T outside, configs inside: a short budget drops the longest T of every config, not whole configs. Per
  // config: the previous T and the seconds its timed loops took.
  std::vector<double> prev_Ts(configs.size(), 0), prev_costs(configs.size(), 0);
  for (int64_t T : o.T) {
    for (size_t ci = 0; ci < configs.size(); ci++) {
      const Config& cfg = configs[ci];
      double& prev_T = prev_Ts[ci];
      double& prev_cost = prev_costs[ci];
      const double left = o.max_seconds - secs_since(t0);
      // the cost grows as T^2: skip a shape that would not fit what is left
      const double predicted = prev_T > 0 ? prev_cost * (double(T) / prev_T) * (double(T) / prev_T) : 0;
      if (left <= 0 || predicted > left) {
        std::printf("%8lld %4lld %4lld %4lld  skipped: time budget (%.1f s left, ~%.1f s needed)\n",
                    (long long)T, (long long)cfg.HS, (long long)cfg.NH, (long long)cfg.NKV, left, predicted);
        continue;
      }
      try {
        const SdpaDims d{1, T, T, cfg.NH, cfg.NKV, cfg.HS};
        const int64_t nq = T * cfg.NH * cfg.HS, nk = T * cfg.NKV * cfg.HS;
        const float scale = 1.0f / std::sqrt(float(cfg.HS));
        auto tb = Clock::now();
        size_t ws = std::max(cuda::cudnn_attention_workspace_bytes(d, true, false, false),
                             cuda::cudnn_attention_workspace_bytes(d, true, true, o.deterministic));
        const double build_s = secs_since(tb);
        DevBuf q(size_t(nq) * 2), k(size_t(nk) * 2), v(size_t(nk) * 2), out(size_t(nq) * 2),
            dout(size_t(nq) * 2);
        DevBuf dq(size_t(nq) * 2), dk(size_t(nk) * 2), dv(size_t(nk) * 2), lse(size_t(T * cfg.NH) * 4);
        DevBuf work(ws);
        fill(q, nq, 1);
        fill(k, nk, 2);
        fill(v, nk, 3);
        fill(dout, nq, 4);
        CU(cudaDeviceSynchronize());
        auto fwd = [&] {
          cuda::cudnn_attention_forward(out.p, lse.as<float>(), q.p, k.p, v.p, d, true, scale, work.p,
                                        nullptr);
        };
        auto bwd = [&] {
          cuda::cudnn_attention_backward(dq.p, dk.p, dv.p, dout.p, q.p, k.p, v.p, out.p, lse.as<float>(), d,
                                         true, scale, o.deterministic, work.p, nullptr);
        };
        auto tl = Clock::now();
        auto time_ms = [&](auto&& body, int reps) {
          std::vector<double> ms;
          for (int r = 0; r < o.warmup + reps; r++) {
            CU(cudaEventRecord(ev0));
            body();
            CU(cudaEventRecord(ev1));
            CU(cudaEventSynchronize(ev1));
            float t = 0;
            CU(cudaEventElapsedTime(&t, ev0, ev1));
            if (r >= o.warmup) ms.push_back(t);
          }
          return median(ms);
        };
        // one fwd+bwd first tells how many timed reps fit what is left
        auto t1 = Clock::now();
        fwd();
        bwd();
        CU(cudaDeviceSynchronize());
        const double one = secs_since(t1);
        const double left_now = o.max_seconds - secs_since(t0);
        int reps = o.reps;
        while (reps > 1 && (o.warmup + reps) * one * 1.3 > left_now) reps--;
        const double fwd_ms = time_ms(fwd, reps);
        const double fwdbwd_ms = time_ms(
            [&] {
              fwd();
              bwd();
            },
            reps);
        CU(cudaGetLastError());
        prev_T = double(T);
        prev_cost = secs_since(tl);

        const double fwd_flops = 4.0 * 1 * double(cfg.NH) * double(T) * double(T) * double(cfg.HS) / 2;
        const double tf_fwd = fwd_flops / (fwd_ms * 1e-3) / 1e12;
        const double tf_fb = 3.5 * fwd_flops / (fwdbwd_ms * 1e-3) / 1e12;
        std::printf("%8lld %4lld %4lld %4lld %10.3f %12.3f %10.1f %14.1f %10.2f %9.1f%s\n", (long long)T,
                    (long long)cfg.HS, (long long)cfg.NH, (long long)cfg.NKV, fwd_ms, fwdbwd_ms, tf_fwd,
                    tf_fb, build_s, double(ws) / (1 << 20),
                    reps < o.reps ? str_cat("  (", reps, " reps)").c_str() : "");
        std::fflush(stdout);
        if (json) {
          std::fprintf(json,
                       "{\"T\": %lld, \"head_dim\": %lld, \"nh\": %lld, \"nkv\": %lld, \"fwd_ms\": %.4f, "
                       "\"fwdbwd_ms\": %.4f, \"tflops_fwd\": %.2f, \"tflops_fwdbwd\": %.2f, \"reps\": %d, "
                       "\"deterministic\": %s}\n",
                       (long long)T, (long long)cfg.HS, (long long)cfg.NH, (long long)cfg.NKV, fwd_ms,
                       fwdbwd_ms, tf_fwd, tf_fb, reps, o.deterministic ? "true" : "false");
          std::fflush(json);
        }
      } catch (const std::exception& e) {
        std::printf("%8lld %4lld %4lld %4lld  ERROR: %s\n", (long long)T, (long long)cfg.HS,
                    (long long)cfg.NH, (long long)cfg.NKV, e.what());
        std::fflush(stdout);
        timing_error = true;
      }
    }
  }
  cudaEventDestroy(ev0);
  cudaEventDestroy(ev1);
  if (json) std::fclose(json);
  std::printf("total %.1f s; correctness %s%s\n", secs_since(t0), check_ok ? "PASS" : "FAIL",
              timing_error ? "; some timings failed (ERROR above)" : "");
  return !check_ok ? 1 : timing_error ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "bench_attention_gpu: error: %s\n", e.what());
    return 2;
  }
}
