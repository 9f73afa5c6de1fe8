// longctx merge-lora: base model + PEFT LoRA adapter -> one HF model directory
// with W + (alpha / r) B A in every targeted weight.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/check.h"
#include "model/llama_io.h"
#include "model/lora.h"

namespace longctx::cli {

namespace {

struct Opts {
  std::string model, adapter, out, config;
};

int run_merge(const Opts& o) {
  CHECK(std::filesystem::is_directory(o.model), o.model, ": model directory not found");
  // --config: the config the adapter was trained under (a LoRA run with model.override writes it as
  // base_config.json), which the merged model keeps; its shapes must be the base's
  const LlamaConfig c = load_llama_config(o.config.empty() ? o.model + "/config.json" : o.config);
  const LoraConfig lc = load_lora_config(o.adapter);
  Memory mem;
  ParamSet w(c, mem, Tier::host, Tag::weights);
  load_params(w, o.model);
  LoraSet a(c, lc, mem, Tier::host, Tag::weights);
  load_lora_peft(o.adapter, a);
  merge_lora(w, a, lc);
  save_model_dir(o.out, c, w);
  std::printf("merged %s (rank %lld, alpha %g, %zu tensors) into %s\n", o.adapter.c_str(), (long long)lc.rank,
              lc.alpha, a.specs().size(), o.out.c_str());
  return 0;
}

}  // namespace

Run add_merge(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "base HF model directory")->required();
  app.add_option("--adapter", o->adapter, "PEFT LoRA adapter directory (adapter_config.json + safetensors)")
      ->required();
  app.add_option("--out", o->out, "merged model directory to write")->required();
  app.add_option("--config", o->config,
                 "config.json for the merged model (default: the base's; a LoRA run with model.override "
                 "writes base_config.json)");
  return [o] { return run_merge(*o); };
}

}  // namespace longctx::cli
