#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include "comm/comm.h"
#include "comm/watchdog.h"
#include "core/stop.h"
#include "io/png.h"
#include "model/flops.h"
#include "model/llama_io.h"
#include "ops/adamw.h"
#include "ops/backend.h"
#include "ops/elementwise.h"
#include "parallel/zero.h"
#include "strategy/memory_model.h"
#include "strategy/plan_search.h"
#include "train/any_step.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/evaluate.h"
#include "train/host_stage.h"
#include "train/progress.h"
#include "train/report.h"
#include "train/schedule.h"

namespace longctx {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

LlamaConfig model_config(const TrainConfig& cfg) {
  const std::string over = cfg.model_override.is_null() ? "" : cfg.model_override.dump();
  if (!cfg.model_path.empty()) {
    CHECK(fs::is_directory(cfg.model_path), cfg.model_path, ": model directory not found (model.path)");
    return load_llama_config(cfg.model_path + "/config.json", over);
  }
  if (!over.empty())
    return llama_config_from_json(merge_config_json(cfg.model_init.dump(), over, "model.init"),
                                  "model.init with model.override");
  return llama_config_from_json(cfg.model_init.dump(), "model.init");
}

// Keep only the metrics of steps <= last_step: a crash may have logged steps
// past the checkpoint we resume from, and they will be run again.
void truncate_metrics(const fs::path& p, int64_t last_step) {
  std::ifstream in(p);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      if (json::parse(line).value("step", int64_t(0)) <= last_step) kept += line + "\n";
    } catch (...) {  // a line cut by the crash
    }
  }
  in.close();
  std::ofstream(p, std::ios::trunc) << kept;
}

// The weights and what trains: every weight and its gradient, or with LoRA
// only the adapters while the base stays frozen. AdamW state lives in the
// ZeroOptimizer (whole, or sharded over ranks). With ZeRO 2-3 across ranks the
// gradients (and at 3 the weights) live in ZeroShards, a block at a time; at
// 3 the whole weights exist on the host only to initialise, load and save.
struct Model {
  LlamaConfig c;
  LoraConfig lc;
  std::unique_ptr<ParamSet> w;
  std::unique_ptr<ParamSet> g;     // full training, ZeRO 0-1
  std::unique_ptr<LoraSet> a, ga;  // LoRA
  Model(const LlamaConfig& cfg, const LoraConfig& lora, Memory& mem, int by_unit)
      : c(cfg),
        lc(lora),
        w(std::make_unique<ParamSet>(cfg, mem, by_unit == 3 ? Tier::host : Tier::device, Tag::weights)) {
    if (lc.enabled()) {
      a = std::make_unique<LoraSet>(c, lc, mem, Tier::device, Tag::weights);
      ga = std::make_unique<LoraSet>(c, lc, mem, Tier::device, Tag::grads);
    } else if (by_unit == 0) {
      g = std::make_unique<ParamSet>(c, mem, Tier::device, Tag::grads);
    }
  }
  std::vector<NamedTensor> trained() const { return a ? named_tensors(*a) : named_tensors(*w); }
  Tensor trained_flat() const { return a ? a->all() : w->all(); }
  Tensor grad_all() const { return a ? ga->all() : g->all(); }
};

// What makes a checkpoint belong to this run: the keys that change what is
// trained on what. Steps, schedule, plan and rank counts may change on resume.
json run_identity(const TrainConfig& cfg) {
  return {{"model", cfg.raw["model"]},
          {"data", cfg.raw["data"]},
          {"seed", cfg.raw["seed"]},
          {"lora", cfg.raw["lora"]}};
}

// The passkey grid of eval.* on the trained model: a table on stdout, a JSON
// file and a heat-map in out_dir.
void final_passkey_eval(const TrainConfig& cfg, const LlamaConfig& c, const ParamSet& w, Memory& mem,
                        Context& ctx) {
  const DataConfig dc = data_config_from_json(cfg.data);
  auto tok = dc.tokenizer.empty() ? make_byte_tokenizer() : load_tokenizer(dc.tokenizer);
  const auto lengths = cfg.eval["lengths"].get<std::vector<int64_t>>();
  const auto depths = cfg.eval["depths"].get<std::vector<double>>();
  const int64_t samples = cfg.eval["samples"];
  // a seed far from training's, so the evaluated samples are new ones
  const PasskeyGrid g = eval_passkey(c, w, *tok, lengths, depths, samples, uint64_t(cfg.seed) + 0x5eed0000u,
                                     int(dc.passkey_digits), mem, ctx);
  std::printf("%s", format_passkey_table(g).c_str());
  const std::string png = (fs::path(cfg.out_dir) / cfg.eval["heatmap"].get<std::string>()).string();
  write_heatmap_png(png, g.accuracy);
  std::ofstream(fs::path(cfg.out_dir) / "passkey_eval.json") << json{{"lengths", g.lengths},
                                                                     {"depths", g.depths},
                                                                     {"accuracy", g.accuracy},
                                                                     {"token_accuracy", g.token_accuracy}}
                                                                    .dump()
                                                             << "\n";
  std::printf("passkey heat-map: %s\n", png.c_str());
}

// One rank: a stop request (SIGTERM, SIGINT) gives up the step in flight at
// the next unit (block) it begins, so that the stop does not wait for a long
// step to end. Across ranks the ranks agree at step boundaries instead.
class StopHook : public UnitHook {
 public:
  UnitHook* wrap(UnitHook* inner) {
    inner_ = inner;
    return this;
  }
  void begin(int unit, bool weights, bool grads) override {
    throw_if_stop_requested();
    if (inner_) inner_->begin(unit, weights, grads);
  }
  void end(int unit, bool weights, bool grads) override {
    if (inner_) inner_->end(unit, weights, grads);
  }

 private:
  UnitHook* inner_ = nullptr;
};

const char* signal_name(int sig) {
  switch (sig) {
    case 15: return "SIGTERM";
    case 2: return "SIGINT";
    case 10: return "SIGUSR1";
    default: return "a stop request";
  }
}

}  // namespace

TrainResult run_training(const TrainConfig& cfg, Comm* comm) {
  // across ranks every rank trains on the same batches (each its share of the
  // tokens); rank 0 alone writes files
  const bool root = !comm || comm->rank() == 0, cp = comm && comm->size() > 1;
  if (cp) set_collective_watchdog(cfg.watchdog_seconds);
  fs::create_directories(cfg.out_dir);
  const std::string yaml = to_yaml(cfg.raw);
  std::printf("effective config:\n%s", yaml.c_str());

  Memory mem;
  if (!cfg.device_mem.empty()) mem.tracker().set_budget(Tier::device, parse_bytes(cfg.device_mem));
  // the host budget the plan is checked against is also enforced: given, or 80% of physical memory
  mem.tracker().set_budget(Tier::host,
                           cfg.host_mem.empty() ? default_host_budget() : parse_bytes(cfg.host_mem));
  Context ctx;
  const Backend backend = setup_device(ctx, mem, cfg.device);
  ctx.math = resolve_math(cfg.dtype, backend);
  // across ranks, the collectives on device buffers: NCCL, or MPI staged through pinned host memory
  const std::unique_ptr<Comm> device_comm =
      comm ? make_device_comm(*comm, mem, backend == Backend::cuda, cfg.comm) : nullptr;
  if (device_comm) comm = device_comm.get();
  if (comm) comm->set_stream(ctx.stream);
  TrainConfig run_cfg = cfg;  // on a GPU the plan's device budget is the GPU's memory unless given
  if (backend == Backend::cuda && run_cfg.plan.device_mem == 0)  // (this rank's share of its GPU)
    run_cfg.plan.device_mem = gpu_budget_bytes(comm ? ranks_sharing_gpu(*comm) : 1);
  run_cfg.plan.gpu_memory = device_memory_is_opaque(cfg.device);
  run_cfg.plan.bf16_attention = backend == Backend::cuda && ctx.math == DType::BF16;
  // Every shape of the run (curriculum stages, then seq_len) gets its plan
  // checked before anything is allocated: a plan that cannot fit is refused now.
  {
    const LlamaConfig mc = model_config(cfg);
    std::vector<std::pair<int64_t, int64_t>> shapes = {{cfg.batch_size, cfg.seq_len}};
    for (const auto& st : cfg.curriculum)
      shapes.emplace_back(st.batch_size > 0 ? st.batch_size : cfg.batch_size, st.seq_len);
    // plan auto may move the moments, or the weights and their state, off the device for some shape: the
    // model and its optimizer are built once, so every shape then keeps them there (its plan chosen again)
    // (only ever further off: none < host < disk for the moments; with the model on the host they are
    // there already unless on the disk)
    for (int pass = 0; pass < 4 && !cp; pass++) {
      Offload model = run_cfg.plan.model_offload, optim = run_cfg.plan.optim_offload;
      // (split: only the second moment on the disk; both when any shape wants them there)
      bool split = run_cfg.plan.optim_offload != Offload::disk || run_cfg.plan.optim_split;
      for (auto [B, T] : shapes) {
        const Plan p = choose_plan(mc, run_cfg.plan, cfg.plan_auto, B, T, Purpose::train, &ctx);
        model = std::max(model, p.model_offload), optim = std::max(optim, p.optim_offload);
        if (p.optim_offload == Offload::disk) split &= p.optim_split;
      }
      if (model == Offload::host && optim == Offload::host) optim = Offload::none;
      split &= optim == Offload::disk;
      if (model == run_cfg.plan.model_offload && optim == run_cfg.plan.optim_offload &&
          split == run_cfg.plan.optim_split)
        break;
      run_cfg.plan.model_offload = model, run_cfg.plan.optim_offload = optim,
      run_cfg.plan.optim_split = split;
    }
  }
  // ZeRO 2-3 of full training across ranks: weights and gradients by block; the weights off the device
  // (offload_model: host): stage 3 on one rank with the shards in host memory
  const bool offload_model = run_cfg.plan.model_offload == Offload::host;
  CHECK(!offload_model || !comm || comm->size() == 1, "offload_model: host runs on one rank for now (",
        comm ? comm->size() : 1,
        " here); across ranks use zero: 3, which shards the weights and their state");
  const int by_unit = offload_model ? 3
                                    : ZeroShards::by_unit_stage(int(cfg.zero), comm ? comm->size() : 1,
                                                                cfg.plan.lora.enabled());
  Model md(model_config(cfg), cfg.plan.lora, mem, by_unit);
  const LlamaConfig& c = md.c;
  std::unique_ptr<Comm> local = comm ? nullptr : make_local_comm();
  Comm& world = comm ? *comm : *local;
  std::unique_ptr<ZeroShards> sh =
      by_unit ? std::make_unique<ZeroShards>(c, *md.w, by_unit, world, mem, offload_model)
              : std::make_unique<ZeroShards>(md.trained_flat(), md.grad_all(), md.trained(), int(cfg.zero),
                                             world, mem);
  const MomentsAt moments = run_cfg.plan.optim_offload == Offload::disk
                                ? (run_cfg.plan.optim_split ? MomentsAt::split : MomentsAt::disk)
                            : run_cfg.plan.optim_offload == Offload::host ? MomentsAt::host
                                                                          : MomentsAt::shards;
  ZeroOptimizer opt(*sh, mem, moments, Plan::kOptimSlice, run_cfg.plan.offload_dir);
  auto data = make_data_source(data_config_from_json(cfg.data), uint64_t(cfg.seed), c.vocab_size);

  int64_t start = 0, bad = 0;
  const fs::path metrics_path = fs::path(cfg.out_dir) / "metrics.jsonl";
  const std::string ckpt = cfg.resume ? latest_checkpoint(cfg.out_dir) : "";
  // the base weights from the model directory, or random ones (through a host copy when in GPU memory)
  auto init_base = [&] {
    on_host(*md.w, c, ctx, false, true, [&](ParamSet& p) {
      if (cfg.model_path.empty())
        init_params_random(p, c, uint64_t(cfg.seed));
      else
        load_params(p, cfg.model_path);
    });
  };
  if (!ckpt.empty()) {
    if (md.a) init_base();  // LoRA: the frozen base is not in checkpoints
    // written by one rank or sharded by any number: the whole weights on every
    // rank (ZeRO-3 takes its part below), the moments of this rank's pieces only
    const CheckpointReader rd(ckpt);
    {
      HostStage hs(ctx);  // the trained tensors, through host copies when in GPU memory
      for (const NamedTensor& n : hs.views(md.trained(), false))
        rd.read("", n.name, n.t.shape, 0, n.t.numel(), n.t.f32());
      hs.flush();
    }
    const auto& ts = sh->tensors();
    opt.load_shard([&](const char* prefix, size_t i, int64_t from, int64_t n, float* dst) {
      rd.read(prefix, ts[i].name, ts[i].t.shape, from, n, dst);
    });
    const json st = rd.state();
    // a checkpoint of another run (other model, data, seed or LoRA) in the same out_dir is refused
    if (st.contains("run") && st["run"] != run_identity(cfg))
      FAIL(ckpt,
           ": written by a run with another model, data, seed or lora config than this one; use another ",
           "out_dir, or resume=false to start over");
    // state.json's fields, checked: a hand-edited or corrupt one is an error naming it
    auto count = [&](const char* key, bool required) -> int64_t {
      const auto it = st.is_object() ? st.find(key) : st.end();
      if (it == st.end() && !required) return 0;
      const bool ok =
          it != st.end() && it->is_number_integer() &&
          (it->is_number_unsigned() ? it->get<uint64_t>() <= uint64_t(INT64_MAX) : it->get<int64_t>() >= 0);
      CHECK(ok, ckpt, "/state.json: '", key, "' must be a whole number >= 0, got ",
            it == st.end() ? std::string("nothing") : it->dump());
      return it->get<int64_t>();
    };
    start = count("step", true);
    bad = count("bad_steps", false);
    CHECK(st.contains("data"), ckpt, "/state.json: has no 'data' (the data position)");
    data->restore(st["data"]);
    if (root) truncate_metrics(metrics_path, start);
    std::printf("resumed from %s at step %lld\n", ckpt.c_str(), (long long)start);
  } else {
    init_base();
    if (md.a)
      on_host(*md.a, c, md.lc, ctx, false, true, [&](LoraSet& a) { init_lora(a, uint64_t(cfg.seed) + 1); });
    if (root) std::ofstream(metrics_path, std::ios::trunc);
  }
  sh->take_weights(*md.w);                           // ZeRO 2-3: this rank's part
  if (by_unit == 3 && !offload_model) md.w.reset();  // only the shards from here on (offloaded: md.w is one)
  // the whole weights on the host, gathered from the shards (ZeRO-3), for saving
  auto whole_weights = [&]() -> std::unique_ptr<ParamSet> {
    auto p = std::make_unique<ParamSet>(c, mem, Tier::host, Tag::weights);
    sh->gather_weights(p->all().f32());
    return p;
  };
  if (root) std::ofstream(fs::path(cfg.out_dir) / "config.yaml") << yaml;  // after the resume check
  std::ofstream metrics;
  if (root) metrics.open(metrics_path, std::ios::app);
  const double peak_gflops = measure_peak_gflops();
  // each step's FLOPs, so that the ETA sees the curriculum's later stages
  std::vector<double> work(size_t(cfg.steps));
  for (int64_t s = 0; s < cfg.steps; s++)
    work[size_t(s)] =
        step_flops(c, cfg.batch_size_at(s), cfg.seq_len_at(s), false).model * double(cfg.grad_accum_at(s));
  Progress progress(cfg.steps, isatty(fileno(stdout)) != 0, std::move(work));

  TrainResult res;
  // The checkpoint after `done` steps. Every rank takes part (gathers); rank 0
  // writes, never from a non-finite state. A write that fails (disk full)
  // leaves the complete checkpoints as they were and stops the run, or with
  // on_checkpoint_error: continue is reported and training goes on.
  int64_t last_saved = ckpt.empty() ? -1 : start;
  auto save = [&](int64_t done, const json& data_state) {
    last_saved = done;
    const json st{{"step", done}, {"bad_steps", bad}, {"data", data_state}, {"run", run_identity(cfg)}};
    const std::map<std::string, std::string> extra{{"config.json", llama_config_to_json(c)}};  // for export
    // for messages only: a failed save leaves the complete checkpoints as they were
    auto last = [&] {
      const std::string done_dir = latest_checkpoint(cfg.out_dir);
      return "the last complete checkpoint is " + (done_dir.empty() ? "none" : done_dir);
    };
    auto poisoned = [&](const std::string& what) {
      FAIL("step ", done, ": the trained state holds a non-finite value (", what,
           "), so no checkpoint is written from it; ", last());
    };
    // the write: one that fails (disk full) stops the run, or by the setting is reported
    auto write = [&](const std::function<void()>& fn) {
      try {
        fn();
        res.checkpoint = latest_checkpoint(cfg.out_dir);
      } catch (const Error& e) {
        if (cfg.on_checkpoint_error == "stop") FAIL(e.what(), "; ", last(), " (on_checkpoint_error: stop)");
        if (root)
          std::printf("\nwarning: %s; %s; training goes on (on_checkpoint_error: continue)\n", e.what(),
                      last().c_str());
      }
    };
    if (cp) {  // each rank its own shard, in parallel, nothing gathered
      std::vector<ShardSlice> mine;
      const auto& ts = sh->tensors();
      opt.save_shard(
          [&](size_t i, int64_t from, int64_t n, const float* w, const float* m, const float* v) {
            mine.push_back({ts[i].name, from, n, w, m, v});
          },
          ctx);
      const std::string bad_value = first_non_finite(mine);
      double who = bad_value.empty() ? 0 : double(comm->size() - comm->rank());  // the first rank with one
      comm->all_reduce_max(&who, 1);
      if (!bad_value.empty()) poisoned(bad_value);
      if (who > 0) poisoned(str_cat("found by rank ", comm->size() - int(who)));
      write([&] { save_checkpoint_sharded(cfg.out_dir, done, mine, st, extra, cfg.keep_last, *comm); });
    } else {
      std::vector<NamedTensor> m, v;
      opt.gather_state(m, v, ctx);
      HostStage hs(ctx);
      const TrainedState ts{hs.views(md.trained()), m, v};
      if (const std::string bad_value = first_non_finite(ts); !bad_value.empty()) poisoned(bad_value);
      write([&] { save_checkpoint(cfg.out_dir, done, ts, st, cfg.keep_last, extra); });
    }
  };
  // A stop request seen by any rank, agreed by all (each may get its signal at another moment).
  auto stop_agreed = [&]() -> int {
    double s = stop_requested();
    if (cp) comm->all_reduce_max(&s, 1);
    return int(s);
  };
  // Stop after `done` steps: their checkpoint (unless written already), and return.
  auto stop_run = [&](int sig, int64_t done, const json& data_state) {
    progress.finish();
    std::printf(
        "\n%s: stopping after step %lld (the step in flight, if any, is given up; its update was not "
        "applied)\n",
        signal_name(sig), (long long)done);
    if (last_saved != done) save(done, data_state);
    res.stopped_by = sig, res.steps_done = done;
    if (root)
      std::printf("stopped: the checkpoint of step %lld is %s; resume=true continues from it\n",
                  (long long)done, latest_checkpoint(cfg.out_dir).c_str());
    return res;
  };

  std::unique_ptr<AnyStep> step_fn;
  StopHook stop_hook;
  int64_t step_T = 0, step_B = 0;
  std::vector<Batch> micro;
  for (int64_t step = start; step < cfg.steps; step++) {
    if (const int sig = stop_agreed()) return stop_run(sig, step, data->state());
    const json data_before = data->state();  // a step given up is redone from here on resume
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t T = cfg.seq_len_at(step), B = cfg.batch_size_at(step), accum = cfg.grad_accum_at(step);
    micro.resize(size_t(accum));
    if (!step_fn || step_T != T || step_B != B) {
      step_fn.reset();  // free the old shape's buffers first
      // refused before anything is allocated when the plan cannot fit its budgets
      const Plan plan = cp ? resolve_plan(run_cfg.plan, c, B, T)
                           : choose_plan(c, run_cfg.plan, cfg.plan_auto, B, T, Purpose::train, &ctx);
      if (step == start || cfg.plan_auto)
        std::printf("%splan for %lld x %lld: %s\n", step == start ? "" : "\n", (long long)B, (long long)T,
                    describe(plan).c_str());
      step_fn = std::make_unique<AnyStep>(c, mem, B, T, plan, comm, parse_cp_kind(cfg.cp_kind),
                                          int(cfg.cp_ulysses), int(cfg.dp));
      step_fn->set_adapters(md.a.get());
      step_fn->set_unit_hook(cp ? sh->hook() : stop_hook.wrap(sh->hook()));
      step_T = T, step_B = B;
    }
    int64_t labels = 0;
    for (auto& b : micro) {
      data->next(b, B, T);
      labels += b.label_count();
    }
    sh->zero_grads();
    const ParamSet& W = by_unit ? sh->weights() : *md.w;
    const Grads G = by_unit ? Grads{sh->grad_views(), nullptr}
                    : md.a  ? Grads{nullptr, md.ga.get()}
                            : Grads{md.g.get(), nullptr};
    double loss_sum = 0, flops = 0;
    try {
      for (auto& b : micro) {
        StepInput in{Tensor(b.inputs.data(), {B, T}, DType::I32), Tensor(b.labels.data(), {B, T}, DType::I32),
                     Tensor(b.positions.data(), {B, T}, DType::I32),
                     Tensor(b.doc_ids.data(), {B, T}, DType::I32)};
        loss_sum +=
            step_fn->run(W, G, in, ctx, double(labels), uint64_t(step) * 131 + uint64_t(&b - micro.data())) *
            double(b.label_count());
        flops += step_flops(c, B, T, false, step_fn->suffix_rows(T)).model;
      }
    } catch (const StepAbandoned&) {  // one rank only: a stop request inside the step
      step_fn.reset();                // its buffers are mid-step; the saved state below does not need them
      return stop_run(stop_requested(), step, data_before);
    }
    sh->reduce_grads();  // summed over ranks (ZeRO 2-3: each rank its part, already during the backward)
    if (const int sig = stop_agreed()) return stop_run(sig, step, data_before);  // before the update
    const double loss = labels > 0 ? loss_sum / double(labels) : 0.0;
    const double norm = std::sqrt(sh->grad_sq_norm(ctx));
    const double lr =
        lr_at(step, cfg.decay_steps > 0 ? cfg.decay_steps : cfg.steps, cfg.warmup_steps, cfg.lr, cfg.min_lr) *
        cfg.lr_scale_at(step);
    const bool finite = std::isfinite(loss) && std::isfinite(norm);
    if (finite) {
      bad = 0;
      if (cfg.grad_clip > 0 && norm > cfg.grad_clip) sh->scale_grads(float(cfg.grad_clip / norm), ctx);
      AdamWParams ap;
      ap.lr = float(lr), ap.beta1 = float(cfg.beta1), ap.beta2 = float(cfg.beta2), ap.step = step + 1;
      opt.step(ap, float(cfg.weight_decay), ctx);
    } else {
      bad++;
      std::printf("\nstep %lld: non-finite %s, update skipped (%lld in a row)\n", (long long)(step + 1),
                  std::isfinite(loss) ? "gradients" : "loss", (long long)bad);
      CHECK(bad < cfg.max_bad_steps, "aborting at step ", step + 1, ": ", bad,
            " steps in a row had a non-finite loss or gradients");
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tokens = double(B * T * accum);
    json j = {{"step", step + 1},
              {"loss", loss},
              {"lr", lr},
              {"grad_norm", norm},
              {"seq_len", T},
              {"batch_size", B},
              {"tokens", tokens},
              {"labels", labels},  // the tokens whose prediction counted (completions only, for such data)
              {"step_seconds", secs},
              {"tokens_per_s", tokens / secs},
              {"mfu", flops / secs / (peak_gflops * 1e9)},
              {"skipped", !finite},
              {"peak_bytes", peak_bytes_json(mem.tracker())}};
    if (cp) j["peak_bytes_per_rank"] = gather_peaks(*comm, mem.tracker());  // every rank's, rank 0 logs
    if (root) metrics << j.dump() << "\n" << std::flush;
    progress.update(step + 1, loss, tokens / secs, mem.tracker().tier(Tier::device).peak, secs);
    res.steps_done = step + 1, res.last_loss = loss;
    const bool stop = cfg.stop_after > 0 && step + 1 == cfg.stop_after;
    const bool last = step + 1 == cfg.steps || stop;
    if ((cfg.save_every > 0 && (step + 1) % cfg.save_every == 0) || last) save(step + 1, data->state());
    if (stop) {
      progress.finish();
      std::printf("stopped after step %lld as asked (stop_after); resume=true continues\n",
                  (long long)(step + 1));
      return res;
    }
  }
  progress.finish();
  if (!md.w) md.w = whole_weights();  // every rank takes part
  if (!root) return res;
  if (md.a) {  // PEFT adapter files; the evaluation below runs the merged weights
    on_host(*md.a, c, md.lc, ctx, true, false, [&](LoraSet& a) {
      save_lora_peft(cfg.out_dir, a, md.lc, cfg.model_path);
      on_host(*md.w, c, ctx, true, true, [&](ParamSet& w) { merge_lora(w, a, md.lc); });
    });
    std::printf("LoRA adapter (PEFT format) written to %s\n", cfg.out_dir.c_str());
    if (!cfg.model_override.is_null()) {  // the base's config as trained (e.g. YaRN): load the base with it
      std::ofstream(fs::path(cfg.out_dir) / "base_config.json") << llama_config_to_json(c) << "\n";
      std::printf(
          "the base model's config as overridden (model.override) is %s/base_config.json: load the base "
          "with it (merge-lora --config takes it)\n",
          cfg.out_dir.c_str());
    }
  } else {
    on_host(*md.w, c, ctx, true, false, [&](ParamSet& w) { save_model_dir(cfg.out_dir, c, w); });
    std::printf("final model written to %s\n", cfg.out_dir.c_str());
  }
  if (!cfg.eval["lengths"].empty()) final_passkey_eval(cfg, c, *md.w, mem, ctx);
  return res;
}

}  // namespace longctx
