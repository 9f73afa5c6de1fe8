// longctx init: a randomly initialised model as an HF directory.
#include <cstdio>

#include "commands.h"
#include "model/llama_io.h"

namespace longctx::cli {

Run add_init(CLI::App& app) {
  struct Opts {
    std::string config, out;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--config", o->config, "HF config.json of the model")->required();
  app.add_option("--out", o->out, "directory to write (config.json + model.safetensors)")->required();
  app.add_option("--seed", o->seed, "random seed");
  return [o] {
    const LlamaConfig c = load_llama_config(o->config);
    Memory mem;
    ParamSet p(c, mem, Tier::host, Tag::weights);
    init_params_random(p, c, o->seed);
    save_model_dir(o->out, c, p);
    int64_t n = 0;
    for (const auto& s : p.specs()) n += s.shape.numel();
    std::printf("wrote %s: %lld parameters, %lld layers, seed %llu\n", o->out.c_str(), (long long)n,
                (long long)c.num_hidden_layers, (unsigned long long)o->seed);
    return 0;
  };
}

}  // namespace longctx::cli
