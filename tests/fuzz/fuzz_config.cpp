// HF config.json (llama_config_from_json): JSON syntax, field types, rope
// settings in both spellings, the unsupported-feature refusals, the size
// limits and validate(); a config that parses must survive a JSON round trip.
#include "fuzz_common.h"
#include "model/config.h"

using namespace longctx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  LlamaConfig c;
  if (!fuzz::clean("config.json", [&] { c = llama_config_from_json(text, "config.json"); })) return 0;
  fuzz::clean("", [&] {
    c.validate();
    (void)c.q_dim(), (void)c.kv_dim();
    const LlamaConfig back = llama_config_from_json(llama_config_to_json(c), "round trip");
    if (back.vocab_size != c.vocab_size || back.hidden_size != c.hidden_size || back.head_dim != c.head_dim ||
        back.num_key_value_heads != c.num_key_value_heads || back.rope_scaling.type != c.rope_scaling.type)
      fuzz::report("config changed in a JSON round trip", text.substr(0, 200));
  });
  return 0;
}
