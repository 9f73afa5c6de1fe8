// Internal to src/io: the parsed, validated form of a tokenizer.json that the
// byte-level BPE tokenizer is built from. tokenizer.cpp turns JSON into a
// Spec (and owns every "not supported" error); tokenizer_bpe.cpp encodes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/tokenizer.h"

namespace longctx::bpe {

// GPT-2's split regex, used by the ByteLevel pre-tokenizer when use_regex.
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool normalized = false;  // HF matches these in a second pass, inside the gaps the others leave
};

// One pre-tokenizer step; steps run in order on every piece the previous
// step produced. The last step is always ByteLevel.
struct PreStep {
  enum class Kind { kSplit, kByteLevel };
  Kind kind = Kind::kByteLevel;
  std::string pattern;            // kSplit: the regex, or a literal string when `literal`
  bool literal = false;           // kSplit
  bool add_prefix_space = false;  // kByteLevel: a piece not starting with ' ' gets one
  bool use_regex = true;          // kByteLevel: split with kGpt2Pattern
};

struct Merge {
  int32_t left = -1, right = -1, merged = -1;
};

struct Spec {
  std::string path;                                // for error messages
  std::unordered_map<std::string, int32_t> vocab;  // token (byte-level alphabet) -> id
  std::vector<Merge> merges;                       // rank = index
  bool ignore_merges = false;                      // a pre-token found whole in the vocab skips merging
  int32_t unk_id = -1;                             // for bytes missing from the vocab; -1 drops them (as HF)
  bool fuse_unk = false;
  std::vector<AddedToken> added;
  std::vector<PreStep> pre;
  int32_t bos_id = -1, eos_id = -1;
};

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Spec spec);

}  // namespace longctx::bpe
