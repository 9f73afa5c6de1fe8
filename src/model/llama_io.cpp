#include "model/llama_io.h"

#include <filesystem>
#include <fstream>

#include "io/safetensors.h"

namespace longctx {

void load_params(ParamSet& p, const std::string& dir) {
  SafeTensorsDir st(dir);
  for (size_t i = 0; i < p.specs().size(); i++) {
    const ParamSpec& s = p.specs()[i];
    CHECK(st.has(s.name), dir, ": weight '", s.name, "' is missing");
    st.read_f32(s.name, p.tensor(i).f32(), s.shape);
  }
}

void save_params(const std::string& path, const ParamSet& p) {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < p.specs().size(); i++) out.push_back({p.specs()[i].name, p.tensor(i)});
  save_safetensors(path, out);
}

void save_model_dir(const std::string& dir, const LlamaConfig& c, const ParamSet& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  CHECK(!ec, dir, ": cannot create directory: ", ec.message());
  const std::string cfg = dir + "/config.json", tmp = cfg + ".tmp";
  {
    std::ofstream f(tmp);
    f << llama_config_to_json(c) << "\n";
    CHECK(f.good(), tmp, ": write failed");
  }
  fs::rename(tmp, cfg, ec);
  CHECK(!ec, cfg, ": rename failed: ", ec.message());
  save_params(dir + "/model.safetensors", p);
}

}  // namespace longctx
