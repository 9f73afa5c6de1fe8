// longctx export: the weights of a training checkpoint (whole files written by
// one rank, or the shards of any number of ranks) as one HF model directory.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/check.h"
#include "model/llama_io.h"
#include "train/checkpoint.h"

namespace longctx::cli {

namespace {

struct Opts {
  std::string checkpoint, out;
};

int run_export(const Opts& o) {
  namespace fs = std::filesystem;
  CHECK(fs::is_directory(o.checkpoint), o.checkpoint, ": checkpoint directory not found");
  CHECK(fs::exists(fs::path(o.checkpoint) / "COMPLETE"), o.checkpoint,
        ": not a complete checkpoint (no COMPLETE file): its writing was cut short");
  CHECK(fs::exists(fs::path(o.checkpoint) / "config.json"), o.checkpoint,
        ": has no config.json (written by an older longctx): export from the run's final model instead");
  const LlamaConfig c = load_llama_config(o.checkpoint + "/config.json");
  const CheckpointReader rd(o.checkpoint);
  Memory mem;
  ParamSet w(c, mem, Tier::host, Tag::weights);
  for (size_t i = 0; i < w.specs().size(); i++) {
    const Tensor t = w.tensor(i);
    try {
      rd.read("", w.specs()[i].name, t.shape, 0, t.numel(), t.f32());
    } catch (const Error& e) {
      FAIL(e.what(), " (a LoRA run's checkpoint holds only its adapters: the run writes them as a PEFT ",
           "adapter at its end)");
    }
  }
  save_model_dir(o.out, c, w);
  std::printf("exported %s (written by %d rank%s) to %s\n", o.checkpoint.c_str(), rd.ranks_written(),
              rd.ranks_written() == 1 ? "" : "s", o.out.c_str());
  return 0;
}

}  // namespace

Run add_export(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--checkpoint", o->checkpoint, "a checkpoint directory (OUT/checkpoints/step_NNNNNNNN)")
      ->required();
  app.add_option("--out", o->out, "HF model directory to write")->required();
  return [o] { return run_export(*o); };
}

}  // namespace longctx::cli
