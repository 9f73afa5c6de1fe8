// JSONL training data (train/data.cpp): lines of {"text": ...} read through
// the byte tokenizer, blank lines, malformed lines, packing; a file that opens
// yields a few batches and resumes from its own state.
#include "fuzz_common.h"
#include "train/data.h"

using namespace longctx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::scratch_file("in.jsonl", std::string_view(reinterpret_cast<const char*>(data), size));
  DataConfig c;
  c.kind = "jsonl";
  c.paths = {path};
  c.pack = size % 2 == 0;
  std::unique_ptr<DataSource> src;
  if (!fuzz::clean(path, [&] { src = make_data_source(c, 1, 0); })) return 0;
  // Later lines are read as the stream reaches them: their errors name the file too.
  fuzz::clean(path, [&] {
    Batch b;
    for (int i = 0; i < 4; i++) {
      src->next(b, 2, 7);
      for (size_t j = 0; j < b.inputs.size(); j++)
        if (b.inputs[j] < 0 || b.inputs[j] >= src->vocab_needed())
          fuzz::report("token outside the vocabulary", std::to_string(b.inputs[j]));
    }
    const nlohmann::json st = src->state();
    auto again = make_data_source(c, 1, 0);
    again->restore(st);
    Batch b1, b2;
    src->next(b1, 1, 9);
    again->next(b2, 1, 9);
    if (b1.inputs != b2.inputs || b1.labels != b2.labels) fuzz::report("resume is not exact", st.dump());
  });
  return 0;
}
