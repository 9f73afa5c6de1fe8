// llm.c .bin token shards: the 256-int32 header (magic, version, count) and
// the size rules; a shard that opens is read whole and then streamed through
// the data layer as a token source.
#include "fuzz_common.h"
#include "io/token_shards.h"
#include "train/data.h"

using namespace longctx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::scratch_file("in.bin", std::string_view(reinterpret_cast<const char*>(data), size));
  std::vector<int32_t> ids;
  if (!fuzz::clean(path, [&] {
        const TokenShard s(path);
        if (s.size() < 0 || s.elem_bytes() * s.size() + kShardHeaderInts * 4 != int64_t(size))
          fuzz::report("shard size disagrees with the file", std::to_string(s.size()));
        ids = read_token_shard(path);
      }))
    return 0;
  fuzz::clean("", [&] {
    DataConfig c;
    c.paths = {path};
    auto src = make_data_source(c, 1, 0);
    Batch b;
    for (int i = 0; i < 3; i++) src->next(b, 2, 5);
    src->restore(src->state());
  });
  return 0;
}
