// longctx plan: predicted peak bytes per tier and tag, FLOPs and step time of
// a step under a plan, without running the model; --auto ranks the plans
// that fit the budgets.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/check.h"
#include "model/llama_io.h"
#include "plan_flags.h"
#include "strategy/plan_search.h"

namespace longctx::cli {

namespace {

struct Opts {
  std::string model, purpose = "grad", rates;
  int64_t seq_len = 0, batch = 1;
  bool json = false, automatic = false;
  PlanFlags flags;
};

LlamaConfig load_model_config(const std::string& m) {
  namespace fs = std::filesystem;
  if (fs::is_directory(m)) return load_llama_config(m + "/config.json");
  CHECK(fs::is_regular_file(m), m, ": neither a model directory nor a config.json");
  return load_llama_config(m);
}

void print_memory(const MemoryPrediction& m) {
  for (int i = 0; i < kNumTiers; i++) {
    if (m.tier[size_t(i)] == 0) continue;
    std::printf("  %-7s %12s", tier_name(Tier(i)), format_bytes(m.tier[size_t(i)]).c_str());
    for (int g = 0; g < kNumTags; g++)
      if (int64_t b = m.tag[size_t(i)][size_t(g)]; b > 0)
        std::printf("  %s %s", tag_name(Tag(g)), format_bytes(b).c_str());
    std::printf("\n");
  }
}

int run_plan(const Opts& o) {
  const LlamaConfig c = load_model_config(o.model);
  CHECK(o.seq_len >= 1, "--seq-len must be >= 1, got ", o.seq_len);
  CHECK(o.batch >= 1, "--batch must be >= 1, got ", o.batch);
  CHECK(o.purpose == "grad" || o.purpose == "train", "--for must be grad or train, got '", o.purpose, "'");
  const Purpose why = o.purpose == "train" ? Purpose::train : Purpose::grad;
  const Plan wanted = o.flags.to_plan();
  const bool automatic = o.automatic || o.flags.is_auto();
  MachineRates r;
  if (!o.rates.empty()) {
    const auto j = nlohmann::json::parse(o.rates);
    r.gemm_gflops = j.value("gemm_gflops", 0.0), r.attn_gflops = j.value("attn_gflops", 0.0);
    r.host_gbps = j.value("host_gbps", 10.0), r.disk_gbps = j.value("disk_gbps", 1.0);
    CHECK(r.gemm_gflops > 0 && r.attn_gflops > 0, "--rates needs gemm_gflops and attn_gflops > 0");
  } else {
    r = measure_rates(c, automatic || wanted.offload == Offload::disk
                             ? (wanted.offload_dir.empty() ? std::string("/tmp") : wanted.offload_dir)
                             : "");
  }
  nlohmann::json out;
  out["rates"] = r.to_json();
  Plan chosen = resolve_plan(wanted, c, o.batch, o.seq_len);
  if (automatic) {
    const auto all = search_plans(c, wanted, o.batch, o.seq_len, why, r);
    std::printf("plans for %lld x %lld tokens that fit device %s, host %s (fastest first):\n",
                (long long)o.batch, (long long)o.seq_len,
                wanted.device_mem ? format_bytes(wanted.device_mem).c_str() : "unlimited",
                format_bytes(wanted.host_mem ? wanted.host_mem : default_host_budget()).c_str());
    nlohmann::json cands = nlohmann::json::array();
    for (const Candidate& cand : all) {
      if (!cand.fits) continue;
      std::printf("  %8.3f s  device %10s  host %10s  %s\n", cand.time.step_s,
                  format_bytes(cand.mem.tier[0]).c_str(), format_bytes(cand.mem.tier[1]).c_str(),
                  describe(cand.plan).c_str());
      cands.push_back({{"plan", plan_to_json(cand.plan)},
                       {"step_seconds", cand.time.step_s},
                       {"peak_bytes", cand.mem.to_json()}});
    }
    out["candidates"] = cands;
    CHECK(!all.empty() && all.front().fits, "plan auto: no plan fits these budgets; the smallest needs ",
          all.empty() ? std::string("?") : all.front().mem.overflow(all.front().plan));
    chosen = all.front().plan;
    std::printf("picked: %s\n", describe(chosen).c_str());
  }
  const MemoryPrediction m = predict_memory(c, chosen, o.batch, o.seq_len, why);
  const TimePrediction t = predict_time(c, chosen, o.batch, o.seq_len, r);
  std::printf("plan: %s\n", describe(chosen).c_str());
  std::printf("predicted peak bytes (%s):\n", o.purpose.c_str());
  print_memory(m);
  std::printf("predicted step: %.3f s (compute %.3f s, offload copies %.3f s overlapped), %.2f GFLOP executed\n",
              t.step_s, t.compute_s, t.copy_s, (t.gemm_flops + t.attn_flops) / 1e9);
  const std::string over = m.overflow(chosen);
  if (!over.empty()) std::printf("does not fit: %s\n", over.c_str());
  out["plan"] = plan_to_json(chosen);
  out["fits"] = over.empty();
  out["peak_bytes"] = m.to_json();
  out["time"] = t.to_json();
  out["tokens"] = o.batch * o.seq_len;
  if (o.json) std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

Run add_plan(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "HF model directory or its config.json")->required();
  app.add_option("--seq-len", o->seq_len, "tokens per sequence")->required();
  app.add_option("--batch", o->batch, "sequences per step (default 1)");
  app.add_option("--for", o->purpose, "grad | train: train adds AdamW state (default grad)");
  app.add_option("--rates", o->rates,
                 "JSON rates instead of measuring: {\"gemm_gflops\":..,\"attn_gflops\":..,\"host_gbps\":..}");
  app.add_flag("--auto", o->automatic, "search the plans; rank those that fit; pick the fastest");
  app.add_flag("--json", o->json, "end with one JSON line (peak_bytes shaped like grad's)");
  add_plan_flags(app, o->flags);
  return [o] { return run_plan(*o); };
}

}  // namespace longctx::cli
