// Text -> token ids for the data pipeline, read from a Hugging Face
// tokenizer.json, and a plain byte tokenizer for models trained from scratch.
// Two BPE families are read, with ids that match the `tokenizers` package
// exactly:
//  - byte-level BPE (GPT-2, Llama 3, Qwen2): optional regex Split
//    pre-tokenizers then ByteLevel, optionally after an NFC normalizer (Qwen2);
//    decoder ByteLevel;
//  - SentencePiece-style BPE (Llama 2, Mistral): byte_fallback (<0xNN>
//    tokens), unk_token and fuse_unk; spaces become "▁" either through the
//    normalizer Prepend("▁") + Replace(" ", "▁") with no pre-tokenizer, or
//    through a Metaspace pre-tokenizer (prepend_scheme first/always/never,
//    split or not); decoder Replace/ByteFallback/Fuse/Strip/Metaspace.
// NFC follows tokenizers' Unicode 9.0 data (unicode_nfc.h). Added/special
// tokens written in the text become their ids. Anything else in a file is an
// error rather than a silently different encoding.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace longctx {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // No BOS/EOS is added. Special/added tokens written literally in the text
  // become their ids (HF's encode with split_special_tokens=False). The text
  // must be valid UTF-8 for BPE tokenizers (any bytes for the byte tokenizer).
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Raw bytes (HF would replace invalid UTF-8 with U+FFFD; we keep the bytes
  // so that decoding a sequence piecewise concatenates). Unknown ids throw.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;                      // highest id + 1, added tokens included
  virtual int32_t token_id(std::string_view token) const = 0;  // vocab or added-token string; -1 if absent
  virtual int32_t bos_id() const = 0;                          // -1 if none
  virtual int32_t eos_id() const = 0;                          // -1 if none
};

// An HF tokenizer.json of one of the families above. BOS/EOS come from
// tokenizer_config.json next to it when present, else from well-known
// special-token names. Anything else throws a one-line error naming the file
// and the unsupported feature.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// The same from the text of a tokenizer.json and, when not empty, of the
// tokenizer_config.json beside it (for files in memory, and for fuzzing).
// `source` stands for the file in error messages (the config is named as the
// tokenizer_config.json in the same directory). load_tokenizer calls this.
std::unique_ptr<Tokenizer> load_tokenizer_from_json(std::string_view json_text, const std::string& source,
                                                    std::string_view config_text = {});

// ids 0..255 = bytes; 256 = <|bos|>, 257 = <|eos|>, 258 = <|pad|>; vocab 259.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

}  // namespace longctx
