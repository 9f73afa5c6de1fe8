// longctx grad: one forward+backward over a token file; writes the gradient
// of every parameter and prints one JSON line of figures.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "io/npy.h"
#include "kernels/cuda/cuda_memory.h"
#include "model/flops.h"
#include "model/llama_io.h"
#include "ops/backend.h"
#include "ops/lm_head_loss.h"
#include "parallel/zero.h"
#include "plan_flags.h"
#include "ranks.h"
#include "strategy/memory_model.h"
#include "strategy/plan_search.h"
#include "train/any_step.h"
#include "train/checkpoint.h"
#include "train/host_stage.h"
#include "train/probe.h"
#include "train/report.h"

namespace longctx::cli {

namespace {

struct Opts {
  std::string model, tokens, out, adapter, cp_kind = "ulysses", device = "auto", dtype = "auto",
                                           comm = "auto";
  int cp_ulysses = 2, dp = 1, zero = 0;
  int repeat = 1;
  bool probe = false;
  PlanFlags flags;
};

// (B, T+1) ids -> inputs [:, :-1] and labels [:, 1:], all checked against V.
void split_tokens(const TokenArray& a, const std::string& path, int64_t V, Tensor inputs, Tensor labels) {
  CHECK(a.cols >= 2, path, ": needs at least 2 tokens per row (inputs [:, :-1], labels [:, 1:]), got ",
        a.cols);
  const int64_t T = a.cols - 1;
  for (int64_t b = 0; b < a.rows; b++)
    for (int64_t t = 0; t <= T; t++) {
      const int32_t id = a.ids[size_t(b * a.cols + t)];
      CHECK(id >= 0 && id < V, path, ": token id ", id, " at [", b, ", ", t,
            "] is outside the model's vocabulary [0, ", V, ")");
      if (t < T) inputs.i32()[b * T + t] = id;
      if (t > 0) labels.i32()[b * T + t - 1] = id;
    }
}

// --probe: per repeat, every row runs on its own with only chunks 0 and k-1 (forward and backward) on the
// full-length state; the step's time is the probe's wall time with each row's measured chunks replaced by
// the extrapolation of all its chunks (what runs outside the chunks is measured, not modelled).
struct Probe {
  std::vector<int64_t> chunks;
  uint64_t draw = 0;                                   // SpaCO: one that backpropagates every probed chunk
  std::vector<double> wall, step;                      // per repeat: measured, extrapolated
  std::vector<double> fwd_s, bwd_s, outside_s;         // per repeat: the extrapolation's parts
  std::vector<std::vector<double>> forward, backward;  // per probed chunk: every row's seconds, every repeat
};

void probe_repeat(AnyStep& step, const LlamaConfig& c, const ParamSet& W, const Grads& G,
                  const Tensor& inputs, const Tensor& labels, double label_norm, bool finish, Context& ctx,
                  Probe& p) {
  ChunkedStep& cs = *step.chunked();
  const int64_t B = inputs.shape[0], T = inputs.shape[1];
  double delta = 0, fwd = 0, bwd = 0, measured = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < B; b++) {
    const Tensor in(inputs.i32() + b * T, {1, T}, DType::I32), lab(labels.i32() + b * T, {1, T}, DType::I32);
    step.run(W, G, StepInput{in, lab, Tensor(), Tensor()}, ctx, label_norm, p.draw);
    const auto& tm = cs.chunk_timings();
    const ProbeEstimate e =
        extrapolate_row(c, probe_shape(cs, c), tm[size_t(p.chunks.front())], tm[size_t(p.chunks.back())]);
    double row = 0;
    for (size_t i = 0; i < p.chunks.size(); i++) {
      const auto& t = tm[size_t(p.chunks[i])];
      row += t.forward_s + t.backward_s;
      p.forward[i].push_back(t.forward_s), p.backward[i].push_back(t.backward_s);
    }
    delta += e.chunks_s() - row, fwd += e.forward_s, bwd += e.backward_s, measured += row;
  }
  if (finish) step.finish_grads(G);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  p.wall.push_back(wall), p.step.push_back(wall + delta);
  p.fwd_s.push_back(fwd), p.bwd_s.push_back(bwd), p.outside_s.push_back(wall - measured);
}

nlohmann::json probe_json(const Probe& p, const ChunkedStep& cs, const LlamaConfig& c, int64_t tokens) {
  nlohmann::json j, per = nlohmann::json::object();
  for (size_t i = 0; i < p.chunks.size(); i++)
    per[std::to_string(p.chunks[i])] = {{"forward", median(p.forward[i])},
                                        {"backward", median(p.backward[i])}};
  const double step = median(p.step);
  j["how"] = "probe";
  j["probe_chunks"] = p.chunks;
  j["chunks"] = cs.chunks();
  j["chunk_size"] = cs.layout().Tc;
  j["chunk_seconds"] = per;  // measured: medians over rows and repeats
  j["probe_seconds"] = median(p.wall);
  j["probe_seconds_all"] = p.wall;
  j["step_seconds_extrapolated"] = step;
  j["step_seconds_extrapolated_all"] = p.step;
  j["tokens_per_second_extrapolated"] = double(tokens) / step;
  j["extrapolation"] = {
      {"forward_s", median(p.fwd_s)},
      {"backward_s", median(p.bwd_s)},
      {"outside_chunks_s", median(p.outside_s)},
      {"backward_share", probe_shape(cs, c).backward_share},
      {"model",
       "per pass, a chunk's seconds linear in the earlier K/V pages it reads (summed over blocks, sliding "
       "windows counted), fitted to the first and the last chunk; SpaCO's backward: its expectation "
       "(budget/k of the chunks); what runs outside the chunks: measured"}};
  if (cs.layout().plan.chunk_mode == ChunkMode::spaco) j["probe_draw"] = p.draw;
  return j;
}

int run_grad(const Opts& o) {
  namespace fs = std::filesystem;
  const CpKind cp = parse_cp_kind(o.cp_kind);
  set_activity("loading the model and tokens");
  CHECK(fs::is_directory(o.model), o.model, ": model directory not found");
  const LlamaConfig c = load_llama_config(o.model + "/config.json");
  const TokenArray toks = load_tokens_npy(o.tokens);
  CHECK(o.repeat >= 1, "--repeat must be >= 1, got ", o.repeat);
  const int64_t B = toks.rows, T = toks.cols - 1;

  // refused before anything is allocated when the plan cannot fit its budgets
  Plan wanted = o.flags.to_plan();
  if (!o.adapter.empty()) {
    CHECK(!wanted.lora.enabled(), "--adapter ", o.adapter, " clashes with --lora-rank: the adapter sets it");
    wanted.lora = load_lora_config(o.adapter);
  }
  // on a GPU the device budget is the GPU's memory unless given (the plan must fit what is really there)
  const Backend backend = parse_device(o.device);
  if (backend == Backend::cuda && wanted.device_mem == 0) {  // (this rank's share of its GPU)
    select_gpu();
    wanted.device_mem = gpu_budget_bytes(ranks_sharing_gpu(world()));
  }
  wanted.gpu_memory = device_memory_is_opaque(o.device);
  const DType math = resolve_math(o.dtype, backend);
  wanted.bf16_attention = backend == Backend::cuda && math == DType::BF16;
  // one rank: the plan is checked against its budgets before anything is allocated; across ranks the
  // per-rank budget is enforced as buffers are allocated (the model of CP memory is not built yet)
  Context rates_on;  // where --plan auto measures its rates: this run's backend and math
  rates_on.backend = backend, rates_on.math = math;
  const Plan plan = world().size() > 1 ? resolve_plan(wanted, c, B, std::max<int64_t>(T, 1))
                                       : choose_plan(c, wanted, o.flags.is_auto(), B, std::max<int64_t>(T, 1),
                                                     Purpose::grad, &rates_on);
  CHECK(!o.probe || plan.chunked(), "--probe needs a chunk mode (--chunk-mode seco or spaco): it runs the ",
        "first and the last chunk of a chunked step, and this plan runs the whole sequence at once (",
        describe(plan), ")");
  CHECK(!o.probe || o.out.empty(), "--probe computes no usable gradient (only the first and the last chunk ",
        "run): drop --out ", o.out);
  Memory mem;
  mem.tracker().set_budget(Tier::device, plan.device_mem);
  mem.tracker().set_budget(Tier::host, plan.host_mem ? plan.host_mem : default_host_budget());
  Context ctx;
  const std::string dtype = math == DType::BF16 ? "bf16" : "fp32";
  setup_device(ctx, mem, o.device);
  // across ranks, the collectives on device buffers: NCCL, or MPI staged through pinned host memory
  const std::unique_ptr<Comm> device_comm = make_device_comm(world(), mem, backend == Backend::cuda, o.comm);
  Comm& comm = device_comm ? *device_comm : world();
  comm.set_stream(ctx.stream);
  ctx.math = math;
  Buffer inputs(mem, Tier::host, Tag::data, {B, std::max<int64_t>(T, 1)}, DType::I32);
  Buffer labels(mem, Tier::host, Tag::data, {B, std::max<int64_t>(T, 1)}, DType::I32);
  split_tokens(toks, o.tokens, c.vocab_size, inputs.t(), labels.t());

  CHECK(o.zero >= 0 && o.zero <= 3, "--zero ", o.zero, ": the stages are 0, 1, 2 and 3");
  // ZeRO 2-3 across ranks: gradients (3: and weights) a block at a time in ZeroShards
  // offload-model host: the same ZeroShards at stage 3 on one rank, its shards (the whole weights and
  // gradients) in host memory
  const bool offload_model = plan.model_offload == Offload::host;
  CHECK(!offload_model || comm.size() == 1, "--offload-model host runs on one rank for now (", comm.size(),
        " here); across ranks use --zero 3, which shards the weights");
  const int by_unit = offload_model ? 3 : comm.size() > 1 && !plan.lora.enabled() && o.zero >= 2 ? o.zero : 0;
  CHECK(!(plan.lora.enabled() && o.zero == 3), "--zero 3 shards the weights a block at a time; with LoRA ",
        "only the small adapters train: use --zero 2");
  auto w = std::make_unique<ParamSet>(c, mem, by_unit == 3 ? Tier::host : Tier::device, Tag::weights);
  on_host(*w, c, ctx, false, true, [&](ParamSet& p) { load_params(p, o.model); });
  std::unique_ptr<ZeroShards> sh;
  if (by_unit) {
    sh = std::make_unique<ZeroShards>(c, *w, by_unit, comm, mem, offload_model);
    sh->take_weights(*w);
    if (by_unit == 3 && !offload_model) w.reset();  // only this rank's part stays (offloaded: w is it)
  }
  // LoRA: the base is frozen; gradients (and the --out file) are the adapters'
  std::unique_ptr<ParamSet> gbase;
  std::unique_ptr<LoraSet> a, ga;
  if (plan.lora.enabled()) {
    a = std::make_unique<LoraSet>(c, plan.lora, mem, Tier::device, Tag::weights);
    ga = std::make_unique<LoraSet>(c, plan.lora, mem, Tier::device, Tag::grads);
    on_host(*a, c, plan.lora, ctx, false, true, [&](LoraSet& h) {
      if (o.adapter.empty())
        init_lora(h, 0);
      else
        load_lora_peft(o.adapter, h);
    });
  } else if (!by_unit) {
    gbase = std::make_unique<ParamSet>(c, mem, Tier::device, Tag::grads);
  }
  if (comm.size() > 1 && (cp == CpKind::ulysses || cp == CpKind::upipe))
    UlyssesAttention::check_layout(c, comm.size());
  set_activity("setting up the step");
  AnyStep step(c, mem, B, T, plan, &comm, cp, o.cp_ulysses, o.dp);
  step.set_adapters(a.get());
  if (sh) step.set_unit_hook(sh->hook());
  const ParamSet& W = sh ? sh->weights() : *w;
  const Grads G = sh ? Grads{sh->grad_views(), nullptr} : Grads{gbase.get(), ga.get()};
  std::vector<double> secs;
  double loss = 0;
  Probe probe;
  if (o.probe) {
    ChunkedStep& cs = *step.chunked();
    probe.chunks = probe_chunks(cs.chunks());
    probe.draw = probe_draw(cs, probe.chunks);
    probe.forward.resize(probe.chunks.size()), probe.backward.resize(probe.chunks.size());
    cs.set_only_chunks(probe.chunks);
  }
  int64_t label_total = 0;
  for (int64_t i = 0; i < B * T; i++) label_total += labels.t().i32()[i] != kIgnoreIndex;
  for (int r = 0; r < (o.probe ? o.repeat : 0); r++) {
    if (gbase) gbase->zero();
    if (ga) ga->zero();
    if (sh) sh->zero_grads();
    set_activity("probe " + std::to_string(r + 1) + ": the first and the last chunk (forward + backward)");
    probe_repeat(step, c, W, G, inputs.t(), labels.t(), double(std::max<int64_t>(label_total, 1)), !sh, ctx,
                 probe);
  }
  for (int r = 0; r < (o.probe ? 0 : o.repeat); r++) {
    if (gbase) gbase->zero();
    if (ga) ga->zero();
    if (sh) sh->zero_grads();
    const auto t0 = std::chrono::steady_clock::now();
    set_activity("running step " + std::to_string(r + 1) + " (forward + backward)");
    loss = step.run(W, G, StepInput{inputs.t(), labels.t(), Tensor(), Tensor()}, ctx);
    if (!sh) step.finish_grads(G);  // ZeRO 2-3: reduce-scattered block by block already
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  set_activity("writing the results");
  nlohmann::json per_rank = gather_peaks(comm, mem.tracker());
  const nlohmann::json peaks = peak_bytes_json(mem.tracker());  // the step's, before the gather below
  if (sh) {  // the whole gradient, gathered from every rank's part (after the peaks were taken)
    gbase = std::make_unique<ParamSet>(c, mem, Tier::host, Tag::grads);
    sh->gather_grads(gbase->all().f32());
  }
  if (!is_root()) return 0;  // rank 0 writes the (summed, so full) gradients and reports
  if (!o.out.empty() && gbase)
    on_host(*gbase, c, ctx, true, false, [&](ParamSet& g) { save_params(o.out, g); });
  if (!o.out.empty() && ga)
    on_host(*ga, c, plan.lora, ctx, true, false,
            [&](LoraSet& g) { save_safetensors(o.out, named_tensors(g)); });

  // a probe reports measured peaks and its chunks' seconds, and the step's time extrapolated (labelled so)
  const double sec = o.probe ? median(probe.step) : median(secs);
  const StepFlops f = step_flops(c, B, T, true, step.suffix_rows(T));
  nlohmann::json j = o.probe ? probe_json(probe, *step.chunked(), c, B * T) : nlohmann::json::object();
  if (o.probe) {
    j["loss"] = nullptr;  // most chunks did not run: no loss (and no gradient) of the step
    j["labels"] = label_total;
    j["achieved_gflops_per_s_extrapolated"] = f.executed / 1e9 / sec;
    j["peak_bytes_how"] = "measured";
    if (comm.size() == 1) j["predicted_peak_bytes"] = predict_memory(c, plan, B, T, Purpose::grad).to_json();
  } else {
    j["how"] = "full";
    j["loss"] = loss;
    j["labels"] = step.label_count();
    j["step_seconds"] = sec;
    j["step_seconds_all"] = secs;
    j["tokens_per_second"] = double(B * T) / sec;
    j["achieved_gflops_per_s"] = f.executed / 1e9 / sec;
  }
  j["tokens"] = B * T;
  j["model_gflops"] = f.model / 1e9;
  j["peak_bytes"] = peaks;
  j["plan"] = plan_to_json(step.layout().plan);
  j["device"] = backend_name(backend);
  j["dtype"] = dtype;
  if (backend == Backend::cuda) j["gpu_pool_peak_bytes"] = cuda::pool_peak_bytes();
  if (comm.size() > 1) {
    j["ranks"] = comm.size();
    j["comm"] = comm.kind();
    j["cp_kind"] = o.cp_kind;
    j["zero"] = o.zero;
    j["peak_bytes_per_rank"] = per_rank;
    // by rank 0; a probe's are those of the chunks it ran, not the step's
    j[o.probe ? "cp_attention_bytes_sent_per_probe" : "cp_attention_bytes_sent_per_step"] =
        double(step.cp_bytes_sent()) / o.repeat;
  }
  const std::string dev_peak = format_bytes(mem.tracker().tier(Tier::device).peak);
  if (o.probe) {
    const int64_t k = step.chunked()->chunks();
    const std::string ran =
        k == 1 ? "chunk 0 of 1" : "chunks 0 and " + std::to_string(k - 1) + " of " + std::to_string(k);
    std::printf(
        "probe over %lld tokens: %s ran on the full-length state in %.4f s; step %.4f s EXTRAPOLATED from "
        "them (median of %d), peak device %s measured\n",
        (long long)(B * T), ran.c_str(), median(probe.wall), sec, o.repeat, dev_peak.c_str());
  } else {
    std::printf("loss %.6f over %lld tokens, step %.4f s (median of %d), peak device %s\n", loss,
                (long long)(B * T), sec, o.repeat, dev_peak.c_str());
  }
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

Run add_grad(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "HF model directory (config.json + safetensors)")->required();
  app.add_option("--tokens", o->tokens, ".npy int array (B, T+1) or (T+1)")->required();
  app.add_option("--out", o->out, "where to write the gradients (.safetensors)");
  app.add_option("--repeat", o->repeat, "run the step N times; step_seconds is the median");
  app.add_flag("--probe", o->probe,
               "chunked plans: build the full-length step, run only its first and last chunks, measure the "
               "peaks and extrapolate the step's time (step_seconds_extrapolated); no gradients");
  app.add_option("--cp-kind", o->cp_kind,
                 "with several ranks (mpirun): ulysses | upipe | ring | zigzag | hybrid");
  app.add_option("--zero", o->zero,
                 "ZeRO stage across ranks: 0, 1, 2 (gradients sharded a block at a time), 3 (and weights)");
  app.add_option("--dp", o->dp, "data-parallel groups taking the ranks (the batch rows split over them)");
  app.add_option("--cp-ulysses", o->cp_ulysses, "hybrid: Ulysses group size, ring across groups (default 2)");
  app.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory: base frozen, adapter gradients out");
  app.add_option("--device", o->device, "cpu | cuda | auto (default: cuda when built and a GPU is visible)");
  app.add_option(
      "--comm", o->comm,
      "ranks on GPUs: auto | nccl | mpi (mpi: device buffers staged through pinned host memory, for "
      "ranks that share a GPU or clusters without NCCL; auto: nccl when every rank has its own GPU)");
  app.add_option(
      "--dtype", o->dtype,
      "auto | fp32 | bf16: the GPU's math (bf16: bf16 tensor-core GEMMs and cuDNN attention with fp32 "
      "accumulation; storage stays fp32 in this build); auto: bf16 on the GPU, fp32 on the CPU");
  add_plan_flags(app, o->flags);
  return [o] { return run_grad(*o); };
}

}  // namespace longctx::cli
