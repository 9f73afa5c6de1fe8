#include "strategy/plan.h"

#include <algorithm>
#include <sstream>

#include "core/check.h"
#include "core/memory.h"

namespace longctx {

const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::full: return "full";
    case Recompute::selective: return "selective";
  }
  return "?";
}
const char* offload_name(Offload o) {
  switch (o) {
    case Offload::none: return "none";
    case Offload::host: return "host";
    case Offload::disk: return "disk";
  }
  return "?";
}
const char* chunk_mode_name(ChunkMode m) {
  switch (m) {
    case ChunkMode::none: return "none";
    case ChunkMode::seco: return "seco";
    case ChunkMode::spaco: return "spaco";
  }
  return "?";
}

Recompute parse_recompute(const std::string& s) {
  for (Recompute r : {Recompute::none, Recompute::full, Recompute::selective})
    if (s == recompute_name(r)) return r;
  FAIL("recompute: '", s, "' is not one of none|full|selective");
}
Offload parse_offload(const std::string& s) {
  for (Offload o : {Offload::none, Offload::host, Offload::disk})
    if (s == offload_name(o)) return o;
  FAIL("offload: '", s, "' is not one of none|host|disk");
}
ChunkMode parse_chunk_mode(const std::string& s) {
  for (ChunkMode m : {ChunkMode::none, ChunkMode::seco, ChunkMode::spaco})
    if (s == chunk_mode_name(m)) return m;
  FAIL("chunk-mode: '", s, "' is not one of none|seco|spaco");
}

int64_t parse_tiles(const std::string& flag, const std::string& s) {
  if (s == "auto") return 0;
  size_t used = 0;
  int64_t n = -1;
  try {
    n = std::stoll(s, &used);
  } catch (...) {
  }
  CHECK(used == s.size() && n >= 1, flag, ": '", s, "' is neither a positive count nor auto");
  return n;
}

namespace {
std::string tiles_str(int64_t n) { return n == 0 ? "auto" : std::to_string(n); }
}  // namespace

std::string describe(const Plan& p) {
  std::ostringstream o;
  o << "recompute=" << recompute_name(p.recompute) << " offload=" << offload_name(p.offload)
    << " mlp_tiles=" << tiles_str(p.mlp_tiles) << " loss_tiles=" << tiles_str(p.loss_tiles)
    << " chunk_mode=" << chunk_mode_name(p.chunk_mode);
  if (p.model_offload != Offload::none) o << " offload_model=" << offload_name(p.model_offload);
  if (p.optim_offload != Offload::none)
    o << " offload_optimizer=" << (p.optim_split ? "split" : offload_name(p.optim_offload));
  if (p.chunked() && p.kv_bf16()) o << " kv_dtype=bf16";
  if (p.chunked() && p.kv_grad_bf16()) o << " kv_grad_dtype=bf16";
  if (p.chunked()) o << " chunk_size=" << tiles_str(p.chunk_size);
  if (p.chunk_mode == ChunkMode::spaco) o << " chunk_budget=" << p.chunk_budget;
  if (p.lora.enabled()) {
    o << " lora_rank=" << p.lora.rank << " lora_alpha=" << p.lora.alpha << " lora_targets=";
    for (size_t i = 0; i < p.lora.targets.size(); i++) o << (i ? "," : "") << p.lora.targets[i];
  }
  return o.str();
}

nlohmann::json plan_to_json(const Plan& p) {
  nlohmann::json j = {{"recompute", recompute_name(p.recompute)},
                      {"offload", offload_name(p.offload)},
                      {"mlp_tiles", p.mlp_tiles},
                      {"loss_tiles", p.loss_tiles},
                      {"chunk_mode", chunk_mode_name(p.chunk_mode)},
                      {"chunk_size", p.chunk_size},
                      {"chunk_budget", p.chunk_budget}};
  if (!p.offload_dir.empty()) j["offload_dir"] = p.offload_dir;
  if (p.model_offload != Offload::none) j["offload_model"] = offload_name(p.model_offload);
  if (p.optim_offload != Offload::none)
    j["offload_optimizer"] = p.optim_split ? "split" : offload_name(p.optim_offload);
  if (p.chunked()) j["kv_dtype"] = p.kv_bf16() ? "bf16" : "fp32";
  if (p.chunked()) j["kv_grad_dtype"] = p.kv_grad_bf16() ? "bf16" : "fp32";
  if (p.lora.enabled())
    j["lora"] = {{"rank", p.lora.rank}, {"alpha", p.lora.alpha}, {"targets", p.lora.targets}};
  return j;
}

Plan resolve_plan(Plan p, const LlamaConfig& c, int64_t B, int64_t T) {
  if (p.chunked() && p.chunk_size == 0) p.chunk_size = std::min<int64_t>(T, 2048);
  const int64_t rows = B * (p.chunked() ? std::min(p.chunk_size, T) : T);
  if (p.mlp_tiles == 0) {
    // MLP scratch about one (rows, C) buffer, in tiles of at least 256 rows
    const int64_t want = (3 * c.intermediate_size + c.hidden_size - 1) / c.hidden_size;
    p.mlp_tiles = std::clamp<int64_t>(want, 1, std::max<int64_t>(1, rows / 256));
  }
  if (p.chunk_mode == ChunkMode::spaco && p.chunk_budget == 0) p.chunk_budget = 1;
  return p;
}

void validate_plan(const Plan& p, int64_t B, int64_t T) {
  validate_lora(p.lora);
  CHECK(B >= 1 && T >= 1, "plan: batch (", B, ") and sequence length (", T, ") must be positive");
  CHECK(p.mlp_tiles >= 0 && p.loss_tiles >= 0, "plan: mlp-tiles and loss-tiles must be >= 1 or auto");
  CHECK(p.offload_dir.empty() || p.offload == Offload::disk || p.optim_offload == Offload::disk,
        "plan: --offload-dir '", p.offload_dir, "' clashes with --offload ", offload_name(p.offload),
        ": the directory is for --offload disk or --offload-optimizer disk");
  CHECK(p.model_offload != Offload::disk, "plan: --offload-model disk is not built; the weights and ",
        "optimizer state go to the host (--offload-model host)");
  CHECK(p.optim_offload != Offload::host || p.model_offload == Offload::none, "plan: --offload-optimizer ",
        "host clashes with --offload-model host, which keeps the moments on the host already (the disk, ",
        "--offload-optimizer disk, is further)");
  CHECK(p.model_offload == Offload::none || !p.lora.enabled(),
        "plan: --offload-model host moves what trains ",
        "off the device; with LoRA only the small adapters train and the frozen base stays on the device");
  CHECK(p.chunked() || p.chunk_size == 0, "plan: --chunk-size ", p.chunk_size,
        " clashes with --chunk-mode none: chunks need seco or spaco");
  CHECK(p.chunk_mode == ChunkMode::spaco || p.chunk_budget == 0, "plan: --chunk-budget ", p.chunk_budget,
        " clashes with --chunk-mode ", chunk_mode_name(p.chunk_mode), ": only spaco draws chunks");
  const int64_t rows = p.chunked() ? (p.chunk_size > 0 ? std::min(p.chunk_size, T) : T) : B * T;
  CHECK(p.mlp_tiles <= rows, "plan: --mlp-tiles ", p.mlp_tiles, " is more than the ", rows,
        " rows the MLP sees");
  CHECK(p.loss_tiles <= rows, "plan: --loss-tiles ", p.loss_tiles, " is more than the ", rows,
        " rows the loss sees");
  if (p.chunked()) {
    CHECK(p.chunk_size >= 1, "plan: --chunk-size must be >= 1, got ", p.chunk_size);
    const int64_t k = (T + p.chunk_size - 1) / p.chunk_size;
    if (p.chunk_mode == ChunkMode::spaco)
      CHECK(p.chunk_budget >= 1 && p.chunk_budget <= k, "plan: --chunk-budget ", p.chunk_budget,
            " must be in [1, ", k, "], the number of chunks of ", p.chunk_size, " in ", T, " tokens");
  }
}

bool set_plan_key(Plan& p, const std::string& key, const std::string& v) {
  if (key == "recompute")
    p.recompute = parse_recompute(v);
  else if (key == "offload")
    p.offload = parse_offload(v);
  else if (key == "offload_dir")
    p.offload_dir = v;
  else if (key == "offload_model")
    p.model_offload = parse_offload(v);
  else if (key == "offload_optimizer") {
    p.optim_split = v == "split";
    p.optim_offload = p.optim_split ? Offload::disk : parse_offload(v);
  } else if (key == "kv_dtype" || key == "kv_grad_dtype") {
    CHECK(v == "auto" || v == "fp32" || v == "bf16", key == "kv_dtype" ? "kv-dtype" : "kv-grad-dtype", ": '",
          v, "' is not one of auto|fp32|bf16");
    (key == "kv_dtype" ? p.kv_dtype : p.kv_grad_dtype) = v == "bf16"   ? Plan::KvDtype::bf16
                                                         : v == "fp32" ? Plan::KvDtype::fp32
                                                                       : Plan::KvDtype::automatic;
  } else if (key == "mlp_tiles")
    p.mlp_tiles = parse_tiles("mlp-tiles", v);
  else if (key == "loss_tiles")
    p.loss_tiles = parse_tiles("loss-tiles", v);
  else if (key == "chunk_mode")
    p.chunk_mode = parse_chunk_mode(v);
  else if (key == "chunk_size")
    p.chunk_size = parse_tiles("chunk-size", v);
  else if (key == "chunk_budget")
    p.chunk_budget = parse_tiles("chunk-budget", v);
  else if (key == "device_mem")
    p.device_mem = v.empty() ? 0 : parse_bytes(v);
  else if (key == "host_mem")
    p.host_mem = v.empty() ? 0 : parse_bytes(v);
  else if (key == "lora_rank") {
    // a rank, or 0 for none; "auto" is refused (parse_tiles would read it as 0: LoRA silently off)
    CHECK(v != "auto", "lora-rank: 'auto' is not a rank: give R (e.g. 16), or 0 for no LoRA");
    p.lora.rank = v == "0" ? 0 : parse_tiles("lora-rank", v);
  } else if (key == "lora_alpha") {
    size_t used = 0;
    double a = 0;
    try {
      a = std::stod(v, &used);
    } catch (...) {
    }
    CHECK(used == v.size() && a > 0, "lora-alpha: '", v, "' is not a positive number");
    p.lora.alpha = a;
  } else if (key == "lora_targets") {
    p.lora.targets.clear();
    std::stringstream ss(v);
    for (std::string t; std::getline(ss, t, ',');)
      if (!t.empty()) p.lora.targets.push_back(t);
    validate_lora(p.lora);
  } else
    return false;
  return true;
}

}  // namespace longctx
