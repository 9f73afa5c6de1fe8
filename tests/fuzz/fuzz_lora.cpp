// LoRA adapter_config.json (load_lora_config): peft_type, r, lora_alpha,
// target_modules, fan_in_fan_out and their types. A config that loads sizes a
// LoraSet for a small model, whose tensors load_lora_peft then reads from a
// fixed adapter_model.safetensors (rank 2, q_proj and v_proj): another rank
// or target set must be a clean error.
#include "core/memory.h"
#include "fuzz_common.h"
#include "model/lora.h"

using namespace longctx;

namespace {

LlamaConfig small_model() {
  LlamaConfig c;
  c.vocab_size = 16, c.hidden_size = 8, c.intermediate_size = 12, c.num_hidden_layers = 2;
  c.num_attention_heads = 2, c.num_key_value_heads = 1, c.head_dim = 4;
  c.validate();
  return c;
}

const std::string& adapter_dir() {
  static const std::string dir = [] {
    const std::string d = fs::path(fuzz::scratch_path("adapter/x")).parent_path().string();
    LoraConfig lc;
    lc.rank = 2, lc.alpha = 4, lc.targets = {"q_proj", "v_proj"};
    Memory mem;
    LoraSet s(small_model(), lc, mem, Tier::host, Tag::weights);
    init_lora(s, 7);
    save_lora_peft(d, s, lc, "fuzz-base");
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = adapter_dir();
  const std::string cfg = dir + "/adapter_config.json";
  fuzz::write_bytes(cfg, std::string_view(reinterpret_cast<const char*>(data), size));
  LoraConfig lc;
  if (!fuzz::clean(cfg, [&] { lc = load_lora_config(dir); })) return 0;
  if (lc.rank < 0) fuzz::report("negative rank accepted", std::to_string(lc.rank));
  if (lc.rank > 64) return 0;  // a valid but large rank: allocation, not parsing
  fuzz::clean(dir, [&] {
    Memory mem;
    LoraSet s(small_model(), lc, mem, Tier::host, Tag::weights);
    load_lora_peft(dir, s);
  });
  return 0;
}
