// The `longctx train` YAML config with key=value overrides
// (load_train_config), then what the trainer reads from it: data.* through
// data_config_from_json and model.init through llama_config_from_json. Input:
// the YAML text, then optionally a NUL and one override per line. A config
// that loads must load again from its own to_yaml().
#include "fuzz_common.h"
#include "model/config.h"
#include "train/data.h"
#include "train/train_config.h"

using namespace longctx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::Split in = fuzz::split_at_nul(data, size);
  const std::string path = fuzz::scratch_file("train.yaml", in.head);
  std::vector<std::string> overrides;
  if (in.has_rest)
    for (std::string_view l : fuzz::lines(in.rest)) overrides.emplace_back(l);
  TrainConfig c;
  // An error about an override names the override, not the file.
  if (!fuzz::clean(overrides.empty() ? path : "", [&] { c = load_train_config(path, overrides); })) return 0;
  fuzz::clean("", [&] { (void)data_config_from_json(c.data); });
  if (!c.model_init.is_null())
    fuzz::clean("model.init", [&] { (void)llama_config_from_json(c.model_init.dump(), "model.init"); });
  for (int64_t step : {int64_t(0), int64_t(1), c.steps - 1, c.steps})
    (void)c.seq_len_at(step), (void)c.batch_size_at(step), (void)c.grad_accum_at(step),
        (void)c.lr_scale_at(step);
  // The trainer writes to_yaml(raw) into the run directory: it must read back the same.
  const std::string again = fuzz::scratch_file("again.yaml", to_yaml(c.raw));
  try {
    const TrainConfig d = load_train_config(again, {});
    if (d.raw != c.raw)
      fuzz::report("to_yaml round trip changed the config", c.raw.dump() + " vs " + d.raw.dump());
  } catch (const std::exception& e) {
    fuzz::report("the config's own to_yaml does not load", std::string(e.what()) + " in " + to_yaml(c.raw));
  }
  return 0;
}
