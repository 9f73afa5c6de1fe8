// longctx train CONFIG.yaml [key=value ...]
#include <cstdio>

#include "commands.h"
#include "ranks.h"
#include "signals.h"
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
    set_activity("reading the config");
    const TrainConfig cfg = load_train_config(o->config, o->overrides);
    Comm& comm = world();
    if (!is_root()) std::freopen("/dev/null", "w", stdout);  // rank 0 reports; errors still reach stderr
    install_stop_signals(cfg.grace_seconds);
    set_activity("training");
    const TrainResult r = run_training(cfg, comm.size() > 1 ? &comm : nullptr);
    if (r.stopped_by == 0)
      std::printf("trained %lld steps, last loss %.4f\n", (long long)r.steps_done, r.last_loss);
    return 0;  // a stop by signal is a clean end too: its checkpoint is written
  };
}

}  // namespace longctx::cli
