#include "strategy/time_model.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <vector>

#include "core/check.h"
#include "core/context.h"
#include "model/flops.h"
#include "model/params.h"
#include "ops/attention.h"
#include "ops/backend.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "strategy/memory_model.h"

namespace longctx {

namespace {

template <class F>
double best_seconds(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Causal attention FLOPs: QK^T and PV, 2*HS each per visible pair (within the window when there is one).
double attn_fwd_flops(double B, double NH, double HS, double Tq, double q_offset, int64_t window = 0) {
  return 4.0 * B * NH * HS * attention_pairs(int64_t(q_offset), int64_t(Tq), window);
}

}  // namespace

nlohmann::json MachineRates::to_json() const {
  return {{"gemm_gflops", gemm_gflops},
          {"attn_gflops", attn_gflops},
          {"host_gbps", host_gbps},
          {"disk_gbps", disk_gbps}};
}

nlohmann::json TimePrediction::to_json() const {
  return {{"gemm_gflops", gemm_flops / 1e9},
          {"attn_gflops", attn_flops / 1e9},
          {"model_gflops", model_flops / 1e9},
          {"copy_bytes", copy_bytes},
          {"compute_seconds", compute_s},
          {"copy_seconds", copy_s},
          {"model_copy_bytes", model_copy_bytes},
          {"model_copy_seconds", model_copy_s},
          {"host_update_seconds", host_update_s},
          {"optim_disk_seconds", optim_disk_s},
          {"step_seconds", step_s}};
}

MachineRates measure_rates(const LlamaConfig& c, const std::string& disk_dir, const Context* on) {
  // measured once per process for the same shapes, directory and device: a run that chooses plans for
  // several shapes (and again at each new one) pays for it once, and every choice sees the same rates
  static std::mutex lock;
  static std::map<std::string, MachineRates> seen;
  const std::string key = str_cat(c.hidden_size, ",", c.intermediate_size, ",", c.num_attention_heads, ",",
                                  c.num_key_value_heads, ",", c.head_dim, ",", disk_dir, ",",
                                  int(on ? on->backend : Backend::cpu), ",", int(on ? on->math : DType::F32));
  const std::lock_guard<std::mutex> hold(lock);
  if (auto it = seen.find(key); it != seen.end()) return it->second;
  MachineRates r;
  // on the backend (and with the math) of `on`, in memory of its own so that no run's peaks see it
  Memory mem;
  Context ctx;
  setup_backend(ctx, mem, on ? on->backend : Backend::cpu);
  ctx.math = on ? on->math : DType::F32;
  const Tier dev = Tier::device;
  auto timed = [&](int reps, auto&& f) {
    return best_seconds(reps, [&] {
      f();
      copy_sync(ctx);  // the GPU's work done, not only queued
    });
  };
  const int64_t N = 1024, C = c.hidden_size, F = std::max(c.intermediate_size, c.hidden_size);
  {  // an MLP-shaped matmul
    Buffer a(mem, dev, Tag::workspace, {N, C}), w(mem, dev, Tag::workspace, {F, C}),
        o(mem, dev, Tag::workspace, {N, F});
    fill_inplace(a.t(), 0.5f, ctx), fill_inplace(w.t(), 0.25f, ctx);
    const double s = timed(3, [&] { matmul_forward(o.t(), a.t(), w.t(), ctx); });
    r.gemm_gflops = 2.0 * double(N * C * F) / s / 1e9;
  }
  {  // flash attention forward + backward at 1024 tokens with the model's heads
    const int64_t T = 1024, NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
    const Shape qs{1, T, NH, HS}, ks{1, T, NKV, HS};
    Buffer q(mem, dev, Tag::workspace, qs), k(mem, dev, Tag::workspace, ks), v(mem, dev, Tag::workspace, ks),
        o(mem, dev, Tag::workspace, qs), lse(mem, dev, Tag::workspace, {1, NH, T}),
        dq(mem, dev, Tag::workspace, qs), dk(mem, dev, Tag::workspace, ks), dv(mem, dev, Tag::workspace, ks);
    fill_inplace(q.t(), 0.01f, ctx), fill_inplace(k.t(), 0.02f, ctx), fill_inplace(v.t(), 0.5f, ctx);
    const double s = timed(2, [&] {
      attention_forward(o.t(), lse.t(), q.t(), k.t(), v.t(), AttentionParams{}, ctx);
      attention_backward(dq.t(), dk.t(), dv.t(), o.t(), q.t(), k.t(), v.t(), o.t(), lse.t(),
                         AttentionParams{}, ctx);
    });
    r.attn_gflops = 3.5 * attn_fwd_flops(1, double(NH), double(HS), double(T), 0) / s / 1e9;
  }
  const size_t bytes = size_t(64) << 20;
  std::vector<char> src(bytes, 1), dst(bytes);
  if (ctx.backend == Backend::cuda) {  // the device and pinned host memory, both ways
    const int64_t n = int64_t(bytes / 4);
    Buffer d(mem, dev, Tag::workspace, {n}), h(mem, Tier::host, Tag::workspace, {n});
    h.zero();
    r.host_gbps = 2.0 * double(bytes) /
                  timed(3,
                        [&] {
                          copy_tensor(d.t(), h.t(), ctx);
                          copy_tensor(h.t(), d.t(), ctx);
                        }) /
                  1e9;
  } else {
    r.host_gbps = double(bytes) / best_seconds(3, [&] { std::memcpy(dst.data(), src.data(), bytes); }) / 1e9;
  }
  if (!disk_dir.empty()) {
    std::string path = disk_dir + "/longctx-rate-XXXXXX";
    const int fd = ::mkstemp(path.data());
    CHECK(fd >= 0, "plan: cannot create a file in '", disk_dir, "' to measure its speed");
    ::unlink(path.c_str());
    const double s = best_seconds(2, [&] {
      CHECK(::pwrite(fd, src.data(), bytes, 0) == ssize_t(bytes), "plan: short write measuring the disk");
      ::fdatasync(fd);
      CHECK(::pread(fd, dst.data(), bytes, 0) == ssize_t(bytes), "plan: short read measuring the disk");
    });
    ::close(fd);
    r.disk_gbps = 2.0 * double(bytes) / s / 1e9;
  }
  seen[key] = r;
  return r;
}

TimePrediction predict_time(const LlamaConfig& c, const Plan& plan, int64_t B, int64_t T,
                            const MachineRates& r) {
  const StepLayout s = step_layout(c, plan, B, T);
  const Plan& p = s.plan;
  const double N = double(B) * double(T), C = double(c.hidden_size), F = double(c.intermediate_size);
  const double Cq = double(c.q_dim()), Ckv = double(c.kv_dim()), V = double(c.vocab_size);
  const double L = double(c.num_hidden_layers), NH = double(c.num_attention_heads), HS = double(c.head_dim);
  const double attn_mm = 2 * N * (C * Cq + 2 * C * Ckv + Cq * C), mlp_mm = 2 * N * 3 * C * F;
  const double head = 2 * N * C * V;
  double attn = 0;  // forward FLOPs of attention for the whole sequence, summed over the blocks
  for (int64_t l = 0; l < c.num_hidden_layers; l++)
    for (int64_t j = 0; j * s.Tc < T; j++) {
      const double tq = double(std::min(s.Tc, T - j * s.Tc));
      attn += attn_fwd_flops(double(B), NH, HS, tq, double(j * s.Tc), c.window(l));
    }
  attn /= std::max(L, 1.0);  // per block, on average
  TimePrediction t;
  t.model_flops = 3 * (L * (attn_mm + mlp_mm + attn) + head);
  // recompute: what the backward reruns of each block's forward
  double re_mm = 0, re_attn = 0;
  const bool tiled = s.mlp_tile < s.N;
  switch (p.recompute) {
    case Recompute::full: re_mm = attn_mm + mlp_mm, re_attn = attn; break;
    case Recompute::selective: re_mm = 2 * N * Cq * C + mlp_mm; break;
    case Recompute::none: re_mm = tiled ? mlp_mm : 0; break;
  }
  if (p.chunked()) {  // a first pass fills the KV caches; SeCO's stops at the last block's K/V
    const double part = p.chunk_mode == ChunkMode::seco ? (L - 1) / std::max(L, 1.0) : 1.0;
    re_mm += part * (attn_mm + mlp_mm), re_attn += part * attn;
  }
  t.gemm_flops = 3 * (L * (attn_mm + mlp_mm) + head) + L * re_mm;
  t.attn_flops = 3.5 * L * attn + L * re_attn;  // flash backward ~2.5x its forward
  // Fewer rows per pass run slower (smaller matmuls, fewer attention tiles to
  // share out, per-call overheads): efficiency N / (N + 256) relative to the
  // 1024 rows the rates were measured at. Fitted to chunked runs on 2 cores.
  const double eff = (double(s.N) / (double(s.N) + 256.0)) / (1024.0 / (1024.0 + 256.0));
  t.compute_s = (t.gemm_flops / (r.gemm_gflops * 1e9) + t.attn_flops / (r.attn_gflops * 1e9)) / eff;
  t.copy_bytes = 2.0 * double(s.offload_sets) * double(s.saved_bytes) * double(p.chunked() ? B : 1);
  const double bw = p.offload == Offload::disk ? r.disk_gbps : r.host_gbps;
  t.copy_s = t.copy_bytes > 0 ? t.copy_bytes / (std::max(bw, 1e-3) * 1e9) : 0;
  // the copy thread overlaps with compute; what it cannot hide adds on
  t.step_s = std::max(t.compute_s, t.copy_s) + 0.05 * std::min(t.compute_s, t.copy_s);
  if (p.optim_offload != Offload::none && p.model_offload == Offload::none) {
    // the moments to the device and back for the update (not overlapped)
    const double trained = double(p.lora.enabled() ? lora_param_bytes(c, p.lora) : param_bytes(c));
    t.model_copy_bytes = 4 * trained;
    t.model_copy_s = t.model_copy_bytes / (std::max(r.host_gbps, 1e-3) * 1e9);
    t.step_s += t.model_copy_s;
  }
  if (p.optim_offload == Offload::disk) {  // and read from the disk and written back, first
    const double trained = double(p.lora.enabled() ? lora_param_bytes(c, p.lora) : param_bytes(c));
    t.optim_disk_s = (p.optim_split ? 2 : 4) * trained / (std::max(r.disk_gbps, 1e-3) * 1e9);
    t.step_s += t.optim_disk_s;
  }
  if (p.model_offload == Offload::host && !p.lora.enabled()) {
    // the weights go to the device for each pass over the blocks (the forward and the backward; chunked:
    // every chunk's first pass, then each rerun chunk's forward and backward), the gradients come back once
    // per backward (SpaCO reruns budget/k of the chunks, in expectation)
    const double w = double(param_bytes(c)), chunks = double((T + s.Tc - 1) / s.Tc);
    const double share =
        p.chunk_mode == ChunkMode::spaco ? std::min(1.0, double(p.chunk_budget) / chunks) : 1;
    const double k = chunks * double(B);  // a batch's rows go one after another
    t.model_copy_bytes = p.chunked() ? w * (k + 2 * k * share) + w * k * share : 3 * w;
    t.model_copy_s = t.model_copy_bytes / (std::max(r.host_gbps, 1e-3) * 1e9);
    // AdamW reads the weights, gradients and both moments and writes three of them: 28 bytes a parameter
    t.host_update_s = 7 * w / (std::max(r.host_gbps, 1e-3) * 1e9);
    t.step_s += t.model_copy_s + t.host_update_s;
  }
  return t;
}

}  // namespace longctx
