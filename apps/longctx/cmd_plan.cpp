// longctx plan: predicted peak bytes per tier and tag, FLOPs and step time of
// a step under a plan, without running the model; --auto ranks the plans
// that fit the budgets.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/check.h"
#include "model/llama_io.h"
#include "ops/backend.h"
#include "plan_flags.h"
#include "strategy/cluster_model.h"
#include "strategy/plan_search.h"

namespace longctx::cli {

namespace {

struct Opts {
  std::string model, purpose = "grad", rates, cp_kind = "all", dtype = "auto", device = "cpu";
  int64_t seq_len = 0, batch = 1;
  bool json = false, automatic = false, max_length = false;
  PlanFlags flags;
  ClusterSpec cluster;
};

// --ranks N: per-rank memory, traffic and step time of each CP kind (and with
// --max-length the longest sequence each fits), for clusters of any size.
int run_cluster(const Opts& o, const LlamaConfig& c, const Plan& wanted, const MachineRates& r, Purpose why) {
  std::vector<CpKind> kinds;
  if (o.cp_kind == "all")
    kinds = {CpKind::ulysses, CpKind::upipe, CpKind::ring, CpKind::zigzag, CpKind::hybrid};
  else
    kinds = {parse_cp_kind(o.cp_kind)};
  const ClusterSpec& cl = o.cluster;
  std::printf(
      "%d ranks (%d per node, %.0f / %.0f GB/s intra / inter), %s, ZeRO %d, %lld x %lld tokens, plan %s\n",
      cl.ranks, cl.ranks_per_node, cl.intra_gbps, cl.inter_gbps, o.dtype.c_str(), cl.zero, (long long)o.batch,
      (long long)o.seq_len, describe(wanted).c_str());
  std::printf("  %-8s %12s %12s %10s %10s %14s%s\n", "cp-kind", "device/rank", "host/rank", "step s",
              "comm s", "sent/rank", o.max_length ? "   longest T that fits" : "");
  nlohmann::json out = nlohmann::json::array();
  for (CpKind k : kinds) {
    if (k == CpKind::hybrid && (cl.ranks % cl.cp_ulysses != 0 || cl.cp_ulysses >= cl.ranks ||
                                c.num_attention_heads % cl.cp_ulysses != 0)) {
      CHECK(o.cp_kind == "all", "cp-kind hybrid: --cp-ulysses ", cl.cp_ulysses, " must divide the ", cl.ranks,
            " ranks (and be fewer) and the ", c.num_attention_heads, " query heads");
      continue;  // 'all': hybrid only where its groups are smaller than the job
    }
    if ((k == CpKind::ulysses || k == CpKind::upipe) && c.num_attention_heads % cl.ranks != 0) {
      std::printf("  %-8s refused: %lld query heads do not divide over %d ranks\n", cp_kind_name(k),
                  (long long)c.num_attention_heads, cl.ranks);
      continue;
    }
    const RankPrediction p = predict_cp(c, wanted, o.batch, o.seq_len, k, cl, r, why);
    nlohmann::json j = p.to_json();
    j["attention_bytes"] = cp_attention_bytes(c, wanted, o.batch, o.seq_len, k, cl);
    j["cp_kind"] = cp_kind_name(k);
    j["fits"] = p.mem.overflow(wanted).empty();
    int64_t longest = 0;
    if (o.max_length) j["longest_T"] = longest = longest_cp_length(c, wanted, k, cl, r, why);
    std::printf("  %-8s %12s %12s %10.3f %10.3f %14s", cp_kind_name(k), format_bytes(p.mem.tier[0]).c_str(),
                format_bytes(p.mem.tier[1]).c_str(), p.step_s, p.comm_s,
                format_bytes(int64_t(p.comm_bytes)).c_str());
    if (o.max_length) std::printf("   %lld", (long long)longest);
    std::printf("%s\n", j["fits"].get<bool>() ? "" : "   (does not fit)");
    out.push_back(j);
  }
  if (o.json)
    std::printf(
        "%s\n",
        nlohmann::json{{"ranks", cl.ranks}, {"kinds", out}, {"plan", plan_to_json(wanted)}}.dump().c_str());
  return 0;
}

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
  Plan wanted = o.flags.to_plan();
  const bool automatic = o.automatic || o.flags.is_auto();
  // one device: the memory layout and math of the device the run will have (a GPU: its memory behind host
  // staging, bf16 math by --dtype; its free memory as the budget unless given; the rates measured on it)
  const bool one = o.cluster.ranks <= 1 && !o.max_length;
  // (a GPU named with the rates and a budget given is predicted without one: nothing is measured on it)
  const bool gpu_unseen = o.device == "cuda" && !o.rates.empty() && wanted.device_mem > 0;
  const Backend backend = !one ? Backend::cpu : gpu_unseen ? Backend::cuda : parse_device(o.device);
  const DType math = one ? resolve_math(o.dtype, backend) : DType::F32;
  Context rates_on;
  rates_on.backend = backend, rates_on.math = math;
  if (one) {
    wanted.gpu_memory = backend == Backend::cuda || o.device == "cpu-staged";
    wanted.bf16_attention = backend == Backend::cuda && math == DType::BF16;
    if (backend == Backend::cuda && wanted.device_mem == 0) wanted.device_mem = gpu_budget_bytes();
  }
  MachineRates r;
  if (!o.rates.empty()) {
    const auto j = nlohmann::json::parse(o.rates);
    r.gemm_gflops = j.value("gemm_gflops", 0.0), r.attn_gflops = j.value("attn_gflops", 0.0);
    r.host_gbps = j.value("host_gbps", 10.0), r.disk_gbps = j.value("disk_gbps", 1.0);
    CHECK(r.gemm_gflops > 0 && r.attn_gflops > 0, "--rates needs gemm_gflops and attn_gflops > 0");
  } else {
    r = measure_rates(c,
                      automatic || wanted.offload == Offload::disk
                          ? (wanted.offload_dir.empty() ? std::string("/tmp") : wanted.offload_dir)
                          : "",
                      &rates_on);
  }
  if (o.cluster.ranks > 1 || o.max_length) {
    CHECK(o.dtype == "auto" || o.dtype == "fp32" || o.dtype == "bf16", "--dtype must be fp32 or bf16, got '",
          o.dtype, "'");
    Opts oc = o;
    oc.dtype = o.dtype == "auto" ? "fp32" : o.dtype;  // (ranks run on CPUs in this build)
    oc.cluster.act_bytes = oc.dtype == "bf16" ? 2 : 4;
    return run_cluster(oc, c, wanted, r, why);  // `auto` choices resolve per length
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
  std::printf(
      "predicted step: %.3f s (compute %.3f s, offload copies %.3f s overlapped), %.2f GFLOP executed\n",
      t.step_s, t.compute_s, t.copy_s, (t.gemm_flops + t.attn_flops) / 1e9);
  const std::string over = m.overflow(chosen);
  if (!over.empty()) std::printf("does not fit: %s\n", over.c_str());
  out["plan"] = plan_to_json(chosen);
  out["device"] = o.device;
  out["dtype"] = dtype_name(math);
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
  app.add_option("--ranks", o->cluster.ranks, "predict per rank for N ranks of context parallelism");
  app.add_option("--ranks-per-node", o->cluster.ranks_per_node,
                 "ranks that share the fast links (default 8)");
  app.add_option("--intra-bw", o->cluster.intra_gbps, "GB/s per rank inside a node (default 300)");
  app.add_option("--inter-bw", o->cluster.inter_gbps, "GB/s per rank across nodes (default 40)");
  app.add_option("--cp-kind", o->cp_kind, "ulysses | upipe | ring | zigzag | hybrid | all (default all)");
  app.add_option("--cp-ulysses", o->cluster.cp_ulysses, "hybrid: Ulysses group size (default 8)");
  app.add_option(
      "--dtype", o->dtype,
      "fp32 | bf16: across ranks, the activations' bytes assumed (bf16: GPUs, fp32 master + AdamW); "
      "on one --device cuda, its math (bf16: the K/V cache in bf16 too, as grad runs it)");
  app.add_option(
      "--device", o->device,
      "cpu (default) | cuda | cpu-staged: one device's memory layout and math, and where the rates "
      "are measured (cuda: on the GPU, its free memory as the budget unless --device-mem)");
  app.add_option("--zero", o->cluster.zero,
                 "ZeRO stage 0-3 for the model state (3: predicted only, not built)");
  app.add_flag("--max-length", o->max_length, "also the longest sequence each CP kind fits in the budgets");
  add_plan_flags(app, o->flags);
  return [o] { return run_plan(*o); };
}

}  // namespace longctx::cli
