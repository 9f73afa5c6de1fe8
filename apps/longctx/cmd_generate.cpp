// longctx generate: greedy decoding with a KV cache.
#include <cstdio>

#include "commands.h"
#include "model/decode.h"
#include "model_dir.h"
#include "ops/backend.h"

namespace longctx::cli {

Run add_generate(CLI::App& app) {
  struct Opts {
    std::string model, prompt, tokenizer, device = "auto", dtype = "auto";
    int64_t max_new = 32;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "HF model directory")->required();
  app.add_option("--prompt", o->prompt, "text to continue")->required();
  app.add_option("--max-new", o->max_new, "tokens to generate at most");
  app.add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: the model's, else bytes)");
  app.add_option("--device", o->device, "cpu | cuda | auto (default: cuda when built and a GPU is visible)");
  app.add_option("--dtype", o->dtype,
                 "auto | fp32 | bf16: the GPU's math (auto: bf16 on the GPU, fp32 on the CPU)");
  return [o] {
    Memory mem;
    Context ctx;
    const Backend b = setup_device(ctx, mem, o->device);
    ctx.math = resolve_math(o->dtype, b);
    LoadedModel m = load_model(o->model, mem, ctx);
    auto tok = model_tokenizer(o->tokenizer, o->model);
    std::vector<int32_t> prompt = tok->encode(o->prompt);
    CHECK(!prompt.empty(), "generate: the prompt is empty");
    for (int32_t id : prompt)
      CHECK(id < m.c.vocab_size, "generate: the tokenizer gives id ", id,
            " beyond the model's vocabulary of ", m.c.vocab_size);
    Decoder d(m.c, mem, int64_t(prompt.size()) + o->max_new);
    const auto out = greedy_generate(d, *m.w, prompt, o->max_new, tok->eos_id(), ctx);
    std::printf("%s%s\n", o->prompt.c_str(), tok->decode(out).c_str());
    return 0;
  };
}

}  // namespace longctx::cli
