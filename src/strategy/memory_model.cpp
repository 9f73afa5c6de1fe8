#include "strategy/memory_model.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "model/params.h"
#include "ops/attention.h"
#include "ops/lm_head_loss.h"

namespace longctx {

namespace {

bool is_mlp_row(const char* n) {
  for (const char* m : {"ln2", "rstd2", "gate", "up", "hmlp"})
    if (std::strcmp(n, m) == 0) return true;
  return false;
}

// Rows a block keeps from its forward to its backward under the policy.
bool kept(const char* name, Recompute r, bool mlp_tiled) {
  switch (r) {
    case Recompute::none: return !(mlp_tiled && is_mlp_row(name));
    case Recompute::selective:  // (and the q/k norms' inputs, which their backward needs)
      for (const char* k : {"q", "k", "v", "att", "lse", "qraw", "kraw", "rstdq", "rstdk"})
        if (std::strcmp(name, k) == 0) return true;
      return false;
    case Recompute::full: return false;
  }
  return false;
}

}  // namespace

int64_t param_bytes(const LlamaConfig& c) {
  int64_t n = 0;
  for (const ParamSpec& s : llama_param_table(c)) n += (s.shape.numel() + 15) / 16 * 16;
  return n * 4;
}

StepLayout step_layout(const LlamaConfig& c, const Plan& plan, int64_t B, int64_t T) {
  StepLayout s;
  s.plan = resolve_plan(plan, c, B, T);
  validate_plan(s.plan, B, T);
  const Plan& p = s.plan;
  s.B = B, s.T = T;
  s.Tc = p.chunked() ? std::min(p.chunk_size, T) : T;
  const int64_t rows = p.chunked() ? 1 : B;  // chunk modes run a batch's rows one after another
  s.N = rows * s.Tc;
  s.mlp_tile = (s.N + p.mlp_tiles - 1) / p.mlp_tiles;
  s.loss_tile =
      p.loss_tiles == 0 ? lm_head_loss_auto_tile(s.N, c.vocab_size) : (s.N + p.loss_tiles - 1) / p.loss_tiles;
  const bool tiled = s.mlp_tile < s.N;
  s.saved.push_back({"inp", {s.N, c.hidden_size}});
  for (const ActSpec& a : block_act_table(c, rows, s.Tc, s.mlp_tile))
    (kept(a.name, p.recompute, tiled) ? s.saved : s.scratch).push_back(a);
  s.grads = block_grad_table(c, rows, s.Tc);
  if (p.lora.enabled()) {  // the adapters' (rows, r) scratch
    s.grads.push_back({"lora_u", {s.N, p.lora.rank}});
    s.grads.push_back({"lora_g", {s.N, p.lora.rank}});
  }
  s.saved_bytes = table_bytes(s.saved);
  const int64_t L = c.num_hidden_layers;
  if (p.offload == Offload::none || L <= 1) {
    s.device_sets = L;
  } else {
    s.device_sets = 2;  // ping-pong staging; the last block's set never leaves the device
    s.offload_sets = L - 1;
  }
  return s;
}

nlohmann::json MemoryPrediction::to_json() const {
  nlohmann::json j, tags = nlohmann::json::object();
  for (int i = 0; i < kNumTiers; i++) {
    j[tier_name(Tier(i))] = tier[size_t(i)];
    nlohmann::json per = nlohmann::json::object();
    for (int g = 0; g < kNumTags; g++)
      if (tag[size_t(i)][size_t(g)] > 0) per[tag_name(Tag(g))] = tag[size_t(i)][size_t(g)];
    tags[tier_name(Tier(i))] = per;
  }
  j["tags"] = tags;
  return j;
}

int64_t default_host_budget() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? int64_t(double(pages) * double(page) * 0.8) : 0;
}

int64_t disk_budget(const std::string& dir) {
  // a directory not made yet is made on the disk of its nearest existing parent
  std::filesystem::path at(dir.empty() ? "/tmp" : dir);
  std::error_code ec;
  while (!std::filesystem::exists(at, ec) && at.has_parent_path() && at.parent_path() != at)
    at = at.parent_path();
  struct statvfs s;
  if (::statvfs(at.c_str(), &s) != 0) return 0;
  return int64_t(double(s.f_bavail) * double(s.f_frsize) * 0.9);
}

std::string MemoryPrediction::overflow(const Plan& p) const {
  std::string out;
  auto check = [&](Tier t, int64_t budget) {
    if (budget > 0 && tier[size_t(t)] > budget)
      out += std::string(out.empty() ? "" : "; ") + tier_name(t) + " needs " + format_bytes(tier[size_t(t)]) +
             " of a " + format_bytes(budget) + " budget";
  };
  check(Tier::device, p.device_mem);
  check(Tier::host, p.host_mem > 0 ? p.host_mem : default_host_budget());
  if (tier[size_t(Tier::disk)] > 0) check(Tier::disk, disk_budget(p.offload_dir));
  return out;
}

MemoryPrediction predict_memory(const LlamaConfig& c, const Plan& plan, int64_t B, int64_t T, Purpose why) {
  const StepLayout s = step_layout(c, plan, B, T);
  MemoryPrediction m;
  auto add = [&](Tier t, Tag g, int64_t bytes) {
    m.tag[size_t(t)][size_t(g)] += bytes;
    m.tier[size_t(t)] += bytes;
  };
  const Tier dev = Tier::device;
  const int64_t C = c.hidden_size, NT = B * T, half = c.head_dim / 2;
  // the model: weights, gradients, AdamW moments
  // LoRA: the base is frozen, only the adapters have gradients and moments
  const int64_t trained = s.plan.lora.enabled() ? lora_param_bytes(c, s.plan.lora) : param_bytes(c);
  if (s.plan.model_offload == Offload::host && !s.plan.lora.enabled()) {
    // ZeroShards offloaded: the whole weights, gradients and moments on the host; on the device one unit's
    // weights and gradients at a time (with tied embeddings the head's unit and the embedding's together)
    int64_t embed = 0, head = 0, block = 0, largest = 0;
    const ParamSet layout(c);
    const auto units = param_units(layout);
    for (size_t u = 0; u < units.size(); u++) {
      const int64_t n = std::max<int64_t>(units[u].second - units[u].first, 1) * 4;
      if (u == 0)
        embed = n;
      else if (u + 1 == units.size())
        head = n;
      else
        block = std::max(block, n);
      largest = std::max(largest, n);
    }
    const int64_t live = std::max({embed, block, head + (c.tie_word_embeddings ? embed : 0)});
    add(Tier::host, Tag::weights, param_bytes(c));
    add(Tier::host, Tag::grads, param_bytes(c));
    if (why == Purpose::train && s.plan.optim_offload == Offload::disk) {  // streamed through host slices
      const int64_t m = s.plan.optim_split ? 1 : 2;  // moments on the disk (split: v; m on the host)
      add(Tier::disk, Tag::optim, m * param_bytes(c));
      add(Tier::host, Tag::optim,
          (2 - m) * param_bytes(c) + m * std::min(Plan::kOptimSlice, param_bytes(c) / 4) * 4);
    } else if (why == Purpose::train) {
      add(Tier::host, Tag::optim, 2 * param_bytes(c));
    }
    add(dev, Tag::weights, live);
    add(dev, Tag::grads, live);
    if (plan.gpu_memory) add(Tier::host, Tag::grads, largest);  // a unit's gradients on their way
  } else {
    add(dev, Tag::weights, param_bytes(c) + (s.plan.lora.enabled() ? trained : 0));
    add(dev, Tag::grads, trained);
    const int64_t slice = 2 * std::min(Plan::kOptimSlice, std::max<int64_t>(trained / 4, 1)) * 4;
    if (why == Purpose::train && s.plan.optim_offload == Offload::host) {  // streamed through device slices
      add(Tier::host, Tag::optim, 2 * trained);
      add(dev, Tag::optim, slice);
    } else if (why == Purpose::train && s.plan.optim_offload == Offload::disk) {  // through host and device
      const int64_t m = s.plan.optim_split ? 1 : 2;  // moments on the disk (split: v; m on the host)
      add(Tier::disk, Tag::optim, m * trained);
      add(Tier::host, Tag::optim, (2 - m) * trained + slice * m / 2);
      add(dev, Tag::optim, slice);
    } else if (why == Purpose::train) {
      add(dev, Tag::optim, 2 * trained);
    }
  }
  if (why == Purpose::grad) add(Tier::host, Tag::data, 2 * NT * 4);  // the command's inputs and labels
  // GradStep: token ids and labels, positions, document ids, rope tables
  add(dev, Tag::data, 2 * s.N * 4);
  // positions, doc ids, the labeled suffix's rope rows and doc ids; rope rows
  add(dev, Tag::workspace, 4 * s.N * 4 + 2 * s.N * half * 4);
  // GPU memory: prepare() builds labels, positions, doc ids, suffix rows and rope rows in host copies
  if (plan.gpu_memory) add(Tier::host, Tag::workspace, 5 * s.N * 4 + 2 * s.N * half * 4);
  const int64_t tile = std::min(s.loss_tile, s.N);  // final norm fused with the loss tiles
  add(dev, Tag::activations,
      (s.N + tile) * C * 4 + tile * 4 + table_bytes(s.scratch));          // xL, hf, rstdf, scratch
  add(dev, Tag::workspace, (tile + s.N) * C * 4 + table_bytes(s.grads));  // dhf, dx, grads
  add(dev, Tag::checkpoint, s.device_sets * s.saved_bytes);
  if (s.offload_sets > 0)
    add(s.plan.offload == Offload::host ? Tier::host : Tier::disk, Tag::checkpoint,
        s.offload_sets * s.saved_bytes);
  // GPU memory to disk: a pinned slot per staging slot (pwrite/pread reach host memory only)
  if (s.offload_sets > 0 && s.plan.offload == Offload::disk && plan.gpu_memory)
    add(Tier::host, Tag::checkpoint, 2 * s.saved_bytes);
  if (s.plan.chunked()) {  // KvPages: K, V and their gradients of every block, pages on the device
    const int64_t Tp = (T + s.Tc - 1) / s.Tc * s.Tc, Ckv = c.kv_dim(), Cq = c.q_dim(),
                  L = c.num_hidden_layers;
    const Tier kv = s.plan.offload == Offload::none   ? dev
                    : s.plan.offload == Offload::host ? Tier::host
                                                      : Tier::disk;
    // each rank of kv_share keeps its part of every page (KvPages::part_elems)
    const int share = std::max(plan.kv_share, 1);
    const int64_t part = (s.Tc * Ckv + share - 1) / share, k = Tp / s.Tc;
    const bool bf16 = s.plan.kv_bf16();  // K and V stored in bf16, their gradients in fp32
    add(kv, Tag::kv_cache, 2 * L * k * part * (bf16 ? 2 : 4));
    const bool gbf16 =
        s.plan.kv_grad_bf16();  // (bf16 gradients: a page as stored and widened, on the device)
    add(kv, Tag::kv_grad, 2 * L * k * part * (gbf16 ? 2 : 4));
    if (gbf16) add(dev, Tag::kv_grad, part * (2 + 4));
    // off the device: K and V staging pages in two slots (bf16: and the slots the copy thread fills), one
    // gradient page; on the device, shared or bf16 pages: the slot where a page is gathered or widened
    if (kv != dev) add(dev, Tag::kv_cache, 4 * s.Tc * Ckv * 4), add(dev, Tag::kv_grad, s.Tc * Ckv * 4);
    if (kv != dev && bf16) add(dev, Tag::kv_cache, 4 * s.Tc * Ckv * 2);
    if (kv == dev && (share > 1 || bf16)) add(dev, Tag::kv_cache, 2 * s.Tc * Ckv * 4);
    if (bf16) add(dev, Tag::kv_cache, part * 2);                          // a page rounded to be stored
    if (kv == Tier::disk) add(Tier::host, Tag::kv_grad, s.Tc * Ckv * 4);  // the copy thread's I/O page
    if (plan.gpu_memory && kv == Tier::disk)
      add(Tier::host, Tag::kv_cache, s.Tc * Ckv * 4);                                     // main's I/O page
    if (plan.gpu_memory && kv != dev) add(Tier::host, Tag::kv_grad, 4 * s.Tc * Ckv * 4);  // dK/dV host copies
    // out, lse, dq of one page; dk, dv of one page in two slots; document ids
    add(dev, Tag::workspace, (2 * s.Tc * Cq + c.num_attention_heads * s.Tc + 4 * s.Tc * Ckv + Tp) * 4);
  }
  // transients: the logits tile of the loss and its row losses, the attention backward's row statistics
  const int64_t lm = int64_t(lm_head_loss_workspace_bytes(s.N, c.vocab_size, C, s.loss_tile));
  int64_t att = int64_t(
      attention_workspace_bytes(B, s.Tc, s.Tc, c.num_attention_heads, c.num_key_value_heads, c.head_dim));
  // bf16 math on the GPU: the backward's bf16 copies (q, out, dout, dq; k, v, dk, dv), not cuDNN's own
  // workspace (its heuristics size that on the GPU)
  if (plan.bf16_attention) att = std::max(att, (4 * B * s.Tc * c.q_dim() + 4 * B * s.Tc * c.kv_dim()) * 2);
  add(dev, Tag::workspace, std::max(lm, att));
  // GPU memory: the weights are loaded (or initialised) through a host copy of them, before the step's own
  // host buffers exist: the tag's peak holds it, the tier's is the larger of the two moments
  if (plan.gpu_memory && !(s.plan.model_offload == Offload::host && !s.plan.lora.enabled())) {
    const size_t h = size_t(Tier::host), d = size_t(Tag::data);
    m.tier[h] = std::max(m.tier[h], m.tag[h][d] + param_bytes(c));
    m.tag[h][d] += param_bytes(c);
  }
  return m;
}

}  // namespace longctx
