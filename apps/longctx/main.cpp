// longctx: train Llama-family models at very long context.
#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"
#include "core/check.h"
#include "kernels/cpu/blas_info.h"
#include "ranks.h"

int main(int argc, char** argv) {
  longctx::ensure_best_blas_kernels(argv);
  CLI::App app{"longctx: Llama training at very long context"};
  app.require_subcommand(1);
  app.set_version_flag("--version", LONGCTX_VERSION);
  std::map<CLI::App*, longctx::cli::Run> runs;
  auto add = [&](const char* name, const char* help, auto fn) {
    CLI::App* sub = app.add_subcommand(name, help);
    runs[sub] = fn(*sub);
  };
  add("init", "write a randomly initialised model as an HF directory", longctx::cli::add_init);
  add("grad", "one forward+backward: loss and the gradient of every parameter", longctx::cli::add_grad);
  add("plan", "predict peak memory per tier and tag and step time of a plan; --auto searches plans",
      longctx::cli::add_plan);
  add("merge-lora", "merge a PEFT LoRA adapter into its base model", longctx::cli::add_merge);
  add("export", "a training checkpoint (one rank's or sharded) as one HF model directory",
      longctx::cli::add_export);
  add("train", "train a model from a YAML config (key=value overrides)", longctx::cli::add_train);
  add("eval", "perplexity on held-out tokens; passkey accuracy over lengths x depths",
      longctx::cli::add_eval);
  add("generate", "greedy decoding with a KV cache", longctx::cli::add_generate);
  add("info", "version, backends, BLAS kernels, CPU features, MPI, CUDA devices", longctx::cli::add_info);
  add("comm-check", "every collective of the ranks' Comm checked on known data (MPI, or --nccl on GPUs)",
      longctx::cli::add_comm_check);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : runs)
      if (sub->parsed()) return run();
  } catch (const std::exception& e) {
    // several ranks: end them all (within seconds, never a hang), naming this rank and its activity
    if (longctx::launched_with_ranks() && longctx::cli::world().size() > 1)
      longctx::cli::world().abort("while " + longctx::cli::activity() + ": " + e.what());
    std::fprintf(stderr, "longctx: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
