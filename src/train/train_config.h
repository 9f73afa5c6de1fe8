// `longctx train` configuration: YAML with key=value overrides, checked
// against a schema of known keys so that a typo is an error, not a default.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "strategy/plan.h"

namespace longctx {

struct CurriculumStage {
  int64_t until_step = 0;  // this stage runs while step < until_step
  int64_t seq_len = 0;
  int64_t batch_size = 0;  // 0: the run's batch_size
  int64_t grad_accum = 0;  // 0: the run's grad_accum
  double lr_scale = 1.0;   // the scheduled lr times this during the stage
};

struct TrainConfig {
  nlohmann::json raw;  // the effective config, every key with its value

  std::string model_path;     // model.path: an HF directory
  nlohmann::json model_init;  // model.init: HF config fields, random init
  nlohmann::json data;        // data.* (read by the data layer)
  int64_t seq_len = 1024, batch_size = 1, grad_accum = 1, steps = 100;
  double lr = 3e-4, min_lr = 3e-5, weight_decay = 0.1, grad_clip = 1.0, beta1 = 0.9, beta2 = 0.95;
  int64_t decay_steps = 0;  // cosine reaches min_lr here, then stays (0: at the last step)
  int64_t warmup_steps = 10, seed = 0, save_every = 0, keep_last = 2, log_every = 1, max_bad_steps = 5;
  std::string out_dir = "runs/train";
  bool resume = false;
  int64_t stop_after =
      0;  // > 0: end this run after that step (checkpointed), the schedule still spans `steps`
  double grace_seconds =
      30;  // SIGTERM / SIGINT: the checkpoint of the last completed step is written within this
  double watchdog_seconds = 600;  // across ranks: a collective waiting longer ends the job (0: never)
  std::string on_checkpoint_error = "stop";  // a checkpoint that cannot be written: stop | continue
  std::vector<CurriculumStage> curriculum;   // empty: seq_len throughout
  std::string device_mem, host_mem;
  std::string device = "auto", dtype = "auto";  // cpu | cuda | auto; fp32 | bf16 | auto (the GPU's math)
  std::string comm = "auto";        // ranks on GPUs: auto | nccl | mpi (staged through pinned host memory)
  Plan plan;                        // recompute, offload, tiles, chunks, budgets (the `plan` CLI's flags)
  bool plan_auto = false;           // plan: auto -- the fastest plan that fits the budgets
  std::string cp_kind = "ulysses";  // under mpirun: ulysses | ring | zigzag
  int64_t cp_ulysses = 2;           // hybrid: Ulysses group size, ring across groups
  int64_t dp = 1;                   // data-parallel groups over the ranks (batch rows split over them)
  int64_t zero = 0;     // ZeRO stage over the ranks: 0, 1 (AdamW state), 2 (+ gradients), 3 (+ weights)
  nlohmann::json eval;  // eval.* after training
  // model.override: HF config fields that replace the model's (rope_theta, rope_scaling,
  // max_position_embeddings, ...); the exported config.json carries them
  nlohmann::json model_override;

  int64_t seq_len_at(int64_t step) const;
  int64_t batch_size_at(int64_t step) const;
  int64_t grad_accum_at(int64_t step) const;
  double lr_scale_at(int64_t step) const;
};

// Reads YAML `path`, applies `key=value` overrides (dotted keys for nesting,
// values parsed as YAML scalars), fills defaults and checks every key and type.
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides);
TrainConfig train_config_from_json(nlohmann::json j, const std::string& source);
std::string to_yaml(const nlohmann::json& j);

}  // namespace longctx
