// longctx train CONFIG.yaml [key=value ...]
#include <cstdio>

#include "commands.h"
#include "train/trainer.h"

namespace longctx::cli {

Run add_train(CLI::App& app) {
  struct Opts {
    std::string config;
    std::vector<std::string> overrides;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("config", o->config, "YAML training config")->required();
  app.add_option("overrides", o->overrides, "key=value overrides (dotted keys for nested ones)");
  return [o] {
    const TrainConfig cfg = load_train_config(o->config, o->overrides);
    const TrainResult r = run_training(cfg);
    std::printf("trained %lld steps, last loss %.4f\n", (long long)r.steps_done, r.last_loss);
    return 0;
  };
}

}  // namespace longctx::cli
