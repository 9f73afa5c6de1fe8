// model.safetensors.index.json: the sharded index (weight_map, shard names,
// the every-tensor-listed-once rules) over two fixed, valid shards written at
// startup; each tensor the index makes visible is read back.
#include "fuzz_common.h"
#include "io/safetensors.h"

using namespace longctx;

namespace {

// Two shards, model-00001-of-00002 (a, b) and model-00002-of-00002 (c), plus
// a stray file, in their own directory.
const std::string& model_dir() {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_path("model/x");
    const std::string root = fs::path(d).parent_path().string();
    std::vector<float> v(6, 0.5f);
    Tensor a(v.data(), Shape{2, 3}), b(v.data(), Shape{4}), c(v.data(), Shape{1, 1, 2});
    save_safetensors(root + "/model-00001-of-00002.safetensors", {{"a", a}, {"b", b}});
    save_safetensors(root + "/model-00002-of-00002.safetensors", {{"c", c}}, SaveDType::BF16);
    fuzz::write_bytes(root + "/notes.txt", "not a shard");
    return root;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = model_dir();
  const std::string index = dir + "/model.safetensors.index.json";
  fuzz::write_bytes(index, std::string_view(reinterpret_cast<const char*>(data), size));
  std::vector<float> buf;
  // Errors name the index or the shard it points at; both live in dir.
  fuzz::clean(dir, [&] {
    const SafeTensorsDir d(dir);
    for (const std::string& name : d.names()) {
      if (!d.has(name)) fuzz::report("names() lists a tensor has() denies", name);
      const Shape s = d.shape(name);
      buf.assign(size_t(s.numel()), 0.f);
      d.read_f32(name, buf.data(), s);
    }
  });
  return 0;
}
