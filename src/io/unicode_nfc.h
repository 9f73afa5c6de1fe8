// Unicode Normalization Form C (UAX #15) of UTF-8 text, for the NFC normalizer
// of tokenizer.json files (Qwen2 and others): canonical decomposition
// (Hangul algorithmically), canonical ordering of combining marks, then
// canonical composition with the composition exclusions respected. The data
// is generated from Python's unicodedata (tools/unicode/gen_nfc_tables.py),
// plus the UTF-8 helpers the tokenizers share.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace longctx::unicode {

enum class NfcData {
  kUnicode,     // the full tables: Unicode unicode_version()
  kTokenizers,  // as HF `tokenizers` normalises: its tables are Unicode 9.0, so the 98 combining
                // marks and one decomposition (U+11938) added since count as unassigned
};

// The NFC form of `text`, appended to `out`. Throws longctx::Error naming the
// byte offset when `text` is not valid UTF-8 (overlong forms, surrogates and
// code points above U+10FFFF included).
void append_nfc(std::string_view text, std::string& out, NfcData data = NfcData::kUnicode);
inline std::string nfc(std::string_view text, NfcData data = NfcData::kUnicode) {
  std::string out;
  append_nfc(text, out, data);
  return out;
}

// The Unicode version of the tables ("14.0.0").
const char* unicode_version();

// One code point of valid UTF-8 at s[i]: its length in bytes (1-4) and value,
// or 0 when the bytes there are not valid UTF-8.
size_t utf8_next(std::string_view s, size_t i, uint32_t& cp);
// Offset of the first invalid UTF-8 sequence, or npos when `s` is valid.
size_t utf8_invalid_at(std::string_view s);
void append_utf8(std::string& out, uint32_t cp);

}  // namespace longctx::unicode
