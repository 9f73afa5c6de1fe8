// .npy token files: magic, version, header length, the Python dict literal
// (descr, fortran_order, shape), the size checks and the values; a file that
// loads is then streamed through the data layer as a token source.
#include "fuzz_common.h"
#include "io/npy.h"
#include "train/data.h"

using namespace longctx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::scratch_file("in.npy", std::string_view(reinterpret_cast<const char*>(data), size));
  TokenArray a;
  if (!fuzz::clean(path, [&] { a = load_tokens_npy(path); })) return 0;
  if (a.rows < 0 || a.cols < 0 || uint64_t(a.rows) * uint64_t(a.cols) != a.ids.size())
    fuzz::report("shape disagrees with the ids", std::to_string(a.rows) + " x " + std::to_string(a.cols));
  for (int32_t id : a.ids)
    if (id < 0) fuzz::report("negative id accepted", std::to_string(id));
  // The same file as training data: a few batches and a state round trip.
  fuzz::clean("", [&] {
    DataConfig c;
    c.paths = {path};
    c.eos_id = a.ids.empty() ? -1 : a.ids[0];
    auto src = make_data_source(c, 1, 0);
    Batch b;
    for (int i = 0; i < 3; i++) src->next(b, 2, 5);
    src->restore(src->state());
    src->next(b, 1, 3);
  });
  return 0;
}
