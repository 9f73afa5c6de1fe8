// Training-step throughput on a small Llama at T = 1K, 4K, 16K, printed next
// to the BLAS sgemm rate measured in the same run, and which BLAS kernels ran.
// Then answer-only labels (the last --answer tokens of each row labeled): the
// step with the last block on the labeled suffix against the whole last block,
// side by side on the same tokens.
//   bench_step [--config configs/tiny.json] [--lengths 1024,4096,16384] [--repeat 3] [--answer 8]
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/blas_info.h"
#include "model/flops.h"
#include "model/params.h"
#include "train/grad_step.h"
#include "train/report.h"

using namespace longctx;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// sgemm GFLOP/s on square matrices of size n, best of a few runs.
static double sgemm_gflops(int n) {
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f,
                c.data(), n);
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * n * n * n / best / 1e9;
}

static LlamaConfig bench_config(const std::string& path) {
  if (!path.empty()) return load_llama_config(path);
  LlamaConfig c;  // the benchmark model
  c.vocab_size = 512, c.hidden_size = 128, c.intermediate_size = 352, c.num_hidden_layers = 2;
  c.num_attention_heads = 8, c.num_key_value_heads = 2, c.head_dim = 16, c.tie_word_embeddings = true;
  c.rope_theta = 500000;
  return c;
}

// One step of the model at T tokens: its memory, weights, gradients and a
// row of T + 1 tokens (inputs, then labels one ahead).
struct StepBench {
  Memory mem;
  Context ctx;
  ParamSet w, g;
  std::vector<int32_t> toks;
  GradStep step;
  StepBench(const LlamaConfig& c, int64_t T)
      : w(c, mem, Tier::device, Tag::weights),
        g(c, mem, Tier::device, Tag::grads),
        toks(tokens(c, T)),
        step(c, mem, 1, T) {
    ctx.mem = &mem;
    init_params_random(w, c, 1);
  }
  // seconds of one step on labels (T) I32
  double run(int32_t* labels, double* loss = nullptr) {
    const int64_t T = int64_t(toks.size()) - 1;
    g.zero();
    auto t0 = Clock::now();
    const double l =
        step.run(w, g, Tensor(toks.data(), {1, T}, DType::I32), Tensor(labels, {1, T}, DType::I32), ctx);
    if (loss) *loss = l;
    return seconds_since(t0);
  }

 private:
  static std::vector<int32_t> tokens(const LlamaConfig& c, int64_t T) {
    std::vector<int32_t> t(static_cast<size_t>(T + 1));
    for (int64_t i = 0; i <= T; i++) t[size_t(i)] = int32_t((i * 2654435761u) % uint64_t(c.vocab_size));
    return t;
  }
};

int main(int argc, char** argv) {
  ensure_best_blas_kernels(argv);
  std::string config;
  std::vector<int64_t> lengths = {1024, 4096, 16384};
  int repeat = 3;
  int64_t answer = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--config")) config = argv[i + 1];
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--answer")) answer = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--lengths")) {
      lengths.clear();
      std::stringstream ss(argv[i + 1]);
      for (std::string t; std::getline(ss, t, ',');) lengths.push_back(std::stoll(t));
    }
  }
  try {
    const LlamaConfig c = bench_config(config);
    c.validate();
    const double sgemm = sgemm_gflops(1024);
    std::printf("cpu features: %s\n", cpu_features().c_str());
    const std::string better = best_blas_coretype();
    std::printf(
        "blas kernels: %s (%s)%s\n", blas_corename().c_str(),
        std::getenv("OPENBLAS_CORETYPE") ? "chosen by longctx via OPENBLAS_CORETYPE" : "library's own choice",
        better.empty() ? ", the best this CPU has" : (", better available: " + better).c_str());
    std::printf("threads: %d\n", omp_get_max_threads());
    std::printf("reference: sgemm 1024^3 = %.1f GFLOP/s (measured now)\n\n", sgemm);
    std::printf("%8s %10s %12s %12s %10s %14s\n", "T", "step_s", "tok/s", "GFLOP/s", "of_sgemm",
                "peak_device");
    for (int64_t T : lengths) {
      StepBench b(c, T);
      std::vector<double> secs;
      for (int r = 0; r < repeat + 1; r++) {  // the first run warms up
        const double t = b.run(b.toks.data() + 1);
        if (r > 0) secs.push_back(t);
      }
      const double s = median(secs);
      const double gf = step_flops(c, 1, T, true).executed / s / 1e9;
      std::printf("%8lld %10.4f %12.0f %12.1f %9.0f%% %14s\n", (long long)T, s, double(T) / s, gf,
                  100 * gf / sgemm, format_bytes(b.mem.tracker().tier(Tier::device).peak).c_str());
    }
    std::printf(
        "\nanswer-only labels (the last %lld tokens of the row): the last block whole vs on the labeled "
        "suffix\n",
        (long long)answer);
    std::printf("%8s %12s %12s %9s %14s\n", "T", "whole_s", "suffix_s", "speedup", "loss_rel_diff");
    for (int64_t T : lengths) {
      StepBench b(c, T);
      std::vector<int32_t> labels(static_cast<size_t>(T), -100);
      for (int64_t t = std::max<int64_t>(0, T - answer); t < T; t++)
        labels[size_t(t)] = b.toks[size_t(t + 1)];
      double loss[2] = {0, 0};
      std::vector<double> secs[2];
      for (int r = 0; r < repeat + 1; r++)
        for (int suffix = 0; suffix < 2; suffix++) {  // alternated, so that load drifts hit both alike
          b.step.set_label_suffix(suffix == 1);
          const double t = b.run(labels.data(), &loss[suffix]);
          if (r > 0) secs[suffix].push_back(t);
        }
      const double whole = median(secs[0]), suffix = median(secs[1]);
      std::printf("%8lld %12.4f %12.4f %8.2fx %14.1e\n", (long long)T, whole, suffix, whole / suffix,
                  std::fabs(loss[1] - loss[0]) / std::fabs(loss[0]));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_step: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
