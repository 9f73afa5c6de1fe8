// Internal to src/io: the Unicode data of the NFC normaliser (unicode_nfc.cpp),
// generated into unicode_nfc_tables.cpp by tools/unicode/gen_nfc_tables.py
// from Python's unicodedata. Both arrays are sorted by code point.
#pragma once
#include <cstddef>
#include <cstdint>

namespace longctx::unicode::tables {

enum Flags : uint8_t {
  kComposes = 1,         // a two-code-point decomposition that recomposes (not excluded)
  kNotInTokenizers = 2,  // added after Unicode 9.0, whose tables the tokenizers package uses
};

struct CccRange {
  uint32_t first, last;
  uint8_t ccc, flags;
};

struct Decomposition {
  uint32_t cp, first, second;  // second == 0: a singleton
  uint8_t flags;
};

extern const char kUnicodeVersion[];
extern const CccRange kCcc[];
extern const size_t kCccCount;
extern const Decomposition kDecomp[];
extern const size_t kDecompCount;

}  // namespace longctx::unicode::tables
