// longctx eval: perplexity on held-out tokens and/or the passkey grid.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "io/png.h"
#include "model_dir.h"
#include "ops/backend.h"
#include "train/evaluate.h"

namespace longctx::cli {

Run add_eval(CLI::App& app) {
  struct Opts {
    std::string model, tokens, tokenizer, lengths = "1024,2048,4096", depths = "0.1,0.3,0.5,0.7,0.9", heatmap,
                                          device = "auto", dtype = "auto";
    int64_t seq_len = 1024, max_windows = 0, samples = 4, seed = 12345;
    int digits = 5;
    bool passkey = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "HF model directory")->required();
  app.add_option("--tokens", o->tokens, "held-out tokens (.npy or .bin) for perplexity");
  app.add_option("--seq-len", o->seq_len, "window length for perplexity");
  app.add_option("--max-windows", o->max_windows, "at most this many windows (0: the whole file)");
  app.add_flag("--passkey", o->passkey, "passkey retrieval accuracy over lengths x depths");
  app.add_option("--lengths", o->lengths, "passkey sample lengths in tokens, comma-separated");
  app.add_option("--depths", o->depths, "needle depths in [0, 1], comma-separated");
  app.add_option("--samples", o->samples, "samples per cell");
  app.add_option("--seed", o->seed, "seed of the passkey samples");
  app.add_option("--digits", o->digits, "digits of the passkey");
  app.add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's, else bytes)");
  app.add_option("--heatmap", o->heatmap, "write the passkey grid as a PNG heat-map");
  app.add_option("--device", o->device, "cpu | cuda | auto (default: cuda when built and a GPU is visible)");
  app.add_option("--dtype", o->dtype,
                 "auto | fp32 | bf16: the GPU's math (auto: bf16 on the GPU, fp32 on the CPU)");
  return [o] {
    CHECK(!o->tokens.empty() || o->passkey, "eval: give --tokens FILE and/or --passkey");
    Memory mem;
    Context ctx;
    const Backend b = setup_device(ctx, mem, o->device);
    ctx.math = resolve_math(o->dtype, b);
    LoadedModel m = load_model(o->model, mem, ctx);
    nlohmann::json j;
    if (!o->tokens.empty()) {
      const PerplexityResult r = eval_perplexity(m.c, *m.w, o->tokens, o->seq_len, o->max_windows, mem, ctx);
      std::printf("perplexity %.4f (loss %.4f) over %lld tokens in %lld windows of %lld\n", r.perplexity,
                  r.loss, (long long)r.tokens, (long long)r.windows, (long long)o->seq_len);
      j["perplexity"] = r.perplexity, j["loss"] = r.loss, j["tokens"] = r.tokens;
    }
    if (o->passkey) {
      auto tok = model_tokenizer(o->tokenizer, o->model);
      const PasskeyGrid g = eval_passkey(m.c, *m.w, *tok, parse_list<int64_t>(o->lengths, "--lengths"),
                                         parse_list<double>(o->depths, "--depths"), o->samples,
                                         uint64_t(o->seed), o->digits, mem, ctx);
      std::printf("%s", format_passkey_table(g).c_str());
      if (!o->heatmap.empty()) {
        write_heatmap_png(o->heatmap, g.accuracy);
        std::printf("heat-map written to %s\n", o->heatmap.c_str());
      }
      j["passkey"] = {{"lengths", g.lengths},
                      {"depths", g.depths},
                      {"accuracy", g.accuracy},
                      {"token_accuracy", g.token_accuracy}};
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  };
}

}  // namespace longctx::cli
