#include "plan_flags.h"

#include "core/check.h"

namespace longctx::cli {

void add_plan_flags(CLI::App& app, PlanFlags& f) {
  struct Flag {
    const char* key;
    const char* help;
  };
  static const Flag flags[] = {
      {"recompute", "none | full | selective: what each block keeps for its backward (default full)"},
      {"offload", "none | host | disk: where saved block state waits for the backward (default none)"},
      {"offload_dir",
       "directory for --offload disk and --offload-optimizer disk (default: the system temp dir)"},
      {"offload_optimizer",
       "none | host | disk | split: the AdamW moments in host memory, streamed through the device in slices "
       "during the update; disk: in a file in --offload-dir, streamed through host slices; split: the first "
       "moment in host memory, the second on the disk (default none)"},
      {"offload_model",
       "none | host: weights, gradients and AdamW state in host memory, a block at a time on "
       "the device, the update on the CPU (default none)"},
      {"mlp_tiles", "N | auto: run the MLP in N row tiles, keeping nothing (default 1)"},
      {"loss_tiles", "N | auto: LM head + loss in N row tiles (default auto)"},
      {"chunk_mode", "none | seco | spaco: chunk-wise training with a KV cache"},
      {"chunk_size", "N | auto: tokens per chunk"},
      {"chunk_budget", "S: SpaCO backpropagates S chunks per step"},
      {"kv_dtype",
       "auto | fp32 | bf16: the chunk modes' K/V cache (auto: bf16 with the GPU's bf16 math); its "
       "gradients stay fp32"},
      {"kv_grad_dtype",
       "auto | fp32 | bf16: the gradients of that cache (auto: fp32); bf16 halves them, each "
       "page rounded after every addition"},
      {"device_mem", "device memory budget, e.g. 1GiB (CPU: emulated)"},
      {"host_mem", "host memory budget"},
      {"lora_rank", "R: train LoRA adapters of rank R only; the base stays frozen"},
      {"lora_alpha", "LoRA alpha (scale alpha / R; default 16)"},
      {"lora_targets", "modules, comma-separated (default q_proj,k_proj,v_proj,o_proj)"},
  };
  for (const Flag& fl : flags) {
    std::string name = std::string("--") + fl.key;
    for (char& ch : name)
      if (ch == '_') ch = '-';
    const std::string key = fl.key;
    app.add_option_function<std::string>(
        name, [&f, key](const std::string& v) { f.values[key] = v; }, fl.help);
  }
  app.add_option("--plan", f.plan, "manual | auto: auto picks the fastest plan that fits the budgets")
      ->check(CLI::IsMember({"manual", "auto"}));
}

Plan PlanFlags::to_plan() const {
  Plan p;
  for (const auto& [key, v] : values) {
    std::string flag = "--" + key;
    for (char& ch : flag)
      if (ch == '_') ch = '-';
    try {
      set_plan_key(p, key, v);
    } catch (const Error& e) {
      FAIL(flag, " ", v, ": ", e.what());
    }
  }
  return p;
}

}  // namespace longctx::cli
