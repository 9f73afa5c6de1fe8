// safetensors files: the 8-byte header length, the JSON header (dtypes,
// shapes, offsets, __metadata__, the layout rules) and the data (every float
// tensor read back as fp32, once through SafeTensorsFile and once through
// SafeTensorsDir opened on the file).
#include <algorithm>

#include "fuzz_common.h"
#include "io/safetensors.h"

using namespace longctx;

namespace {

constexpr int64_t kMaxReadElems = int64_t(1) << 20;  // the data section is small anyway

void read_all(const SafeTensorsFile& f, std::vector<float>& buf) {
  for (const SafeTensorInfo& t : f.tensors()) {
    const int64_t n = t.shape.numel();
    if (n < 0 || n > kMaxReadElems) fuzz::report("numel out of range after validation", t.name);
    if (t.end - t.begin != uint64_t(n) * dtype_size(t.dtype))
      fuzz::report("data_offsets do not match the shape after validation", t.name);
    if (f.find(t.name) != &t) fuzz::report("find() disagrees with tensors()", t.name);
    buf.assign(size_t(n), 0.f);
    if (t.dtype == DType::F32 || t.dtype == DType::BF16 || t.dtype == DType::F16) {
      f.read_f32(t.name, buf.data(), t.shape);
    } else {
      try {
        f.read_f32(t.name, buf.data(), t.shape);
        fuzz::report("a non-float tensor was read as fp32", t.name);
      } catch (const Error&) {
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::scratch_file("in.safetensors", std::string_view(reinterpret_cast<const char*>(data), size));
  std::vector<float> buf;
  const bool ok = fuzz::clean(path, [&] {
    const SafeTensorsFile f(path);
    read_all(f, buf);
    for (const auto& [k, v] : f.metadata()) (void)k, (void)v;
  });
  if (ok) {
    fuzz::clean(path, [&] {
      const SafeTensorsDir d(path);
      for (const std::string& name : d.names()) {
        const Shape s = d.shape(name);
        buf.assign(size_t(std::max<int64_t>(s.numel(), 0)), 0.f);
        try {
          d.read_f32(name, buf.data(), s);
        } catch (const Error&) {  // non-float dtypes
        }
      }
    });
  }
  return 0;
}
