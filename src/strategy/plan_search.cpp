#include "strategy/plan_search.h"

#include <algorithm>

namespace longctx {

namespace {

int distance(const Plan& a, const Plan& b) {
  return int(a.recompute != b.recompute) + int(a.offload != b.offload) + int(a.mlp_tiles != b.mlp_tiles) +
         int(a.loss_tiles != b.loss_tiles) + int(a.chunk_mode != b.chunk_mode) +
         int(a.chunk_size != b.chunk_size) + int(a.model_offload != b.model_offload) +
         int(a.optim_offload != b.optim_offload) + int(a.optim_split != b.optim_split);
}

}  // namespace

std::vector<Candidate> search_plans(const LlamaConfig& c, const Plan& base, int64_t B, int64_t T, Purpose why,
                                    const MachineRates& r) {
  // chunk sizes for SeCO: powers of two from 256 below T (a batch's rows run one after another)
  std::vector<int64_t> chunks = {0};
  for (int64_t cs = 256; cs < T; cs *= 2) chunks.push_back(cs);
  // full training may move the AdamW moments (offload_optimizer), or the weights with their whole state
  // (offload_model), to the host
  struct State {
    Offload model, optim;
    bool split;
  };
  std::vector<State> models = {{base.model_offload, base.optim_offload, base.optim_split}};
  if (why == Purpose::train && !base.lora.enabled() && base.model_offload == Offload::none &&
      base.optim_offload == Offload::none) {
    models.push_back({Offload::none, Offload::host, false}),
        models.push_back({Offload::host, Offload::none, false});
    if (r.disk_gbps > 0)  // the moments on the disk (disk speed measured): both, or the second only (split)
      for (bool split : {false, true})
        models.push_back({Offload::none, Offload::disk, split}),
            models.push_back({Offload::host, Offload::disk, split});
  }
  std::vector<Candidate> out;
  for (const State& ms : models)
    for (int64_t cs : chunks)
      for (Recompute rc : {Recompute::none, Recompute::selective, Recompute::full})
        for (Offload off : {Offload::none, Offload::host, Offload::disk})
          for (int64_t mlp : {int64_t(1), int64_t(0)}) {
            if (off == Offload::disk && r.disk_gbps <= 0) continue;  // disk speed not measured
            Plan p = base;
            p.model_offload = ms.model, p.optim_offload = ms.optim, p.optim_split = ms.split;
            p.recompute = rc, p.offload = off, p.mlp_tiles = mlp, p.loss_tiles = 0;
            p.chunk_mode = cs > 0 ? ChunkMode::seco : ChunkMode::none, p.chunk_size = cs, p.chunk_budget = 0;
            if (off != Offload::disk && p.optim_offload != Offload::disk) p.offload_dir.clear();
            p = resolve_plan(p, c, B, T);
            if (mlp == 0 && p.mlp_tiles == 1) continue;  // auto resolved to untiled: a duplicate
            Candidate cand;
            cand.plan = p;
            cand.mem = predict_memory(c, p, B, T, why);
            cand.time = predict_time(c, p, B, T, r);
            cand.fits = cand.mem.overflow(p).empty();
            out.push_back(cand);
          }
  std::stable_sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    if (a.fits != b.fits) return a.fits;
    return a.fits ? a.time.step_s < b.time.step_s : a.mem.tier[0] < b.mem.tier[0];
  });
  return out;
}

const Candidate* nearest_fitting(const std::vector<Candidate>& all, const Plan& wanted) {
  const Candidate* best = nullptr;
  for (const Candidate& c : all) {
    if (!c.fits) continue;
    if (!best || distance(c.plan, wanted) < distance(best->plan, wanted) ||
        (distance(c.plan, wanted) == distance(best->plan, wanted) && c.time.step_s < best->time.step_s))
      best = &c;
  }
  return best;
}

}  // namespace longctx

namespace longctx {

Plan choose_plan(const LlamaConfig& c, const Plan& wanted, bool automatic, int64_t B, int64_t T, Purpose why,
                 const Context* on) {
  if (!automatic) {
    const Plan p = resolve_plan(wanted, c, B, T);
    const std::string over = predict_memory(c, p, B, T, why).overflow(p);
    if (over.empty()) return p;
    const MachineRates r = measure_rates(c, p.offload_dir, on);
    const auto all = search_plans(c, wanted, B, T, why, r);
    const Candidate* near = nearest_fitting(all, p);
    FAIL("plan (", describe(p), ") cannot fit at ", B, " x ", T, " tokens: ", over, "; ",
         near ? "the nearest plan that fits: " + describe(near->plan) + " (add its flags, or --plan auto)"
              : std::string("no plan fits these budgets"));
  }
  const MachineRates r = measure_rates(c, wanted.offload_dir.empty() ? "/tmp" : wanted.offload_dir, on);
  const auto all = search_plans(c, wanted, B, T, why, r);
  CHECK(!all.empty() && all.front().fits, "plan auto: no plan fits ", B, " x ", T, " tokens in device ",
        format_bytes(wanted.device_mem), " and host ",
        format_bytes(wanted.host_mem ? wanted.host_mem : default_host_budget()), "; the smallest plan needs ",
        all.empty() ? "?" : all.front().mem.overflow(all.front().plan));
  return all.front().plan;
}

}  // namespace longctx
