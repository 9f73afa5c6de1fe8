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
  std::string model, adapter, out;
};

int run_merge(const Opts& o) {
  CHECK(std::filesystem::is_directory(o.model), o.model, ": model directory not found");
  const LlamaConfig c = load_llama_config(o.model + "/config.json");
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
  return [o] { return run_merge(*o); };
}

}  // namespace longctx::cli
