// Shared by the commands that read a model directory.
#pragma once
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "model/llama_io.h"
#include "train/host_stage.h"

namespace longctx::cli {

struct LoadedModel {
  LlamaConfig c;
  std::unique_ptr<ParamSet> w;
};

// The weights on the device tier (GPU memory on the CUDA backend: read through a host copy).
inline LoadedModel load_model(const std::string& dir, Memory& mem, Context& ctx) {
  CHECK(std::filesystem::is_directory(dir), dir, ": model directory not found");
  LoadedModel m;
  m.c = load_llama_config(dir + "/config.json");
  m.w = std::make_unique<ParamSet>(m.c, mem, Tier::device, Tag::weights);
  on_host(*m.w, m.c, ctx, false, true, [&](ParamSet& p) { load_params(p, dir); });
  return m;
}

// --tokenizer, else DIR/tokenizer.json when present, else the byte tokenizer.
inline std::unique_ptr<Tokenizer> model_tokenizer(const std::string& flag, const std::string& dir) {
  if (!flag.empty()) return load_tokenizer(flag);
  if (std::filesystem::exists(dir + "/tokenizer.json")) return load_tokenizer(dir + "/tokenizer.json");
  return make_byte_tokenizer();
}

template <class T>
std::vector<T> parse_list(const std::string& s, const char* flag) {
  std::vector<T> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    std::stringstream is(item);
    T v;
    CHECK(is >> v && is.eof(), flag, ": cannot read '", item, "' in '", s, "'");
    out.push_back(v);
  }
  return out;
}

}  // namespace longctx::cli
