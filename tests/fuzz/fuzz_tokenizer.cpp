// tokenizer.json and the tokenizer_config.json beside it, through
// load_tokenizer_from_json (what load_tokenizer calls on the files' text).
// Input: tokenizer.json bytes, then optionally a NUL and tokenizer_config.json
// bytes. A tokenizer that loads encodes a few fixed texts, every id it gives
// is in its vocabulary, and the ids decode.
#include "fuzz_common.h"
#include "io/tokenizer.h"

using namespace longctx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::Split in = fuzz::split_at_nul(data, size);
  std::unique_ptr<Tokenizer> t;
  // Errors name fuzz/tokenizer.json, or the tokenizer_config.json in fuzz/.
  if (!fuzz::clean("fuzz/", [&] { t = load_tokenizer_from_json(in.head, "fuzz/tokenizer.json", in.rest); }))
    return 0;
  static const char* const kTexts[] = {"",
                                       "Hello, world!",
                                       "  two  spaces\n\ttab",
                                       "caf\xc3\xa9 \xe2\x82\xac 1234567 \xe4\xb8\xad\xe6\x96\x87",
                                       "<|endoftext|> <s></s> <unk>",
                                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
  fuzz::clean("", [&] {
    const int64_t vocab = t->vocab_size();
    for (const char* s : kTexts) {
      const std::vector<int32_t> ids = t->encode(s);
      for (int32_t id : ids)
        if (id < 0 || id >= vocab)
          fuzz::report("encode produced an id outside the vocab", std::to_string(id));
      (void)t->decode(ids);
    }
    (void)t->bos_id(), (void)t->eos_id(), (void)t->token_id("a");
  });
  return 0;
}
