// Internal to src/io: the SentencePiece-style BPE family of tokenizer.json
// files (Llama 2, Mistral, converted from SentencePiece models): text is
// words of Unicode characters with "▁" for spaces, either put there by the
// normalizer (Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer: the whole
// text is one word) or by a Metaspace pre-tokenizer; characters missing from
// the vocab become <0xNN> byte tokens (byte_fallback) or the unk token.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/tokenizer_bpe.h"

namespace longctx::bpe {

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const Spec& spec);

// HF's decoder chain: each step maps the list of token strings (Replace,
// ByteFallback, Fuse, Strip, Metaspace), and the result is their
// concatenation. Byte tokens that do not form valid UTF-8 stay raw bytes
// (HF writes one U+FFFD per byte).
std::string run_decoder(const std::vector<DecodeStep>& steps, std::vector<std::string> tokens);

}  // namespace longctx::bpe
