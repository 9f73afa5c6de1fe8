// Text -> token ids for the data pipeline: byte-level BPE read from a Hugging
// Face tokenizer.json (GPT-2 / Llama 3 style), and a plain byte tokenizer for
// models trained from scratch. Ids match the `tokenizers` package exactly.
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

// HF tokenizer.json with a BPE model, ByteLevel (optionally after a regex
// Split) pre-tokenizer, no normalizer. BOS/EOS come from tokenizer_config.json
// next to it when present, else from well-known special-token names. Anything
// else throws a one-line error naming the file and the unsupported feature.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// ids 0..255 = bytes; 256 = <|bos|>, 257 = <|eos|>, 258 = <|pad|>; vocab 259.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

}  // namespace longctx
