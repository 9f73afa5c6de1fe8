// Internal to src/io: the parsed, validated form of a tokenizer.json (Spec),
// and the part of its BPE tokenizers that both families share (BpeBase):
// added tokens, the normalizer, merging by rank, the word cache. tokenizer.cpp
// turns JSON into a Spec (and owns every "not supported" error);
// tokenizer_bytelevel.cpp is the byte-level family (GPT-2, Llama 3, Qwen2),
// tokenizer_sp.cpp the SentencePiece-style one (Llama 2, Mistral).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
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
  bool normalized = false;  // HF matches these in a second pass, in the normalized gaps the others leave
};

// One normalizer step; the steps run in order on each stretch of text between
// non-normalized added tokens.
struct NormStep {
  enum class Kind { kNfc, kPrepend, kReplace };
  Kind kind = Kind::kNfc;
  std::string text;  // kPrepend: what is put in front (of non-empty text); kReplace: what is replaced
  std::string with;  // kReplace: the replacement
};

enum class Prepend { kAlways, kFirst, kNever };  // Metaspace's prepend_scheme

// One pre-tokenizer step; steps run in order on every piece the previous step
// produced. In the byte-level family the last step is always ByteLevel; in the
// SentencePiece family there is at most one step, Metaspace.
struct PreStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  Kind kind = Kind::kByteLevel;
  std::string pattern;                 // kSplit: the regex, or a literal string when `literal`
  bool literal = false;                // kSplit
  bool add_prefix_space = false;       // kByteLevel: a piece not starting with ' ' gets one
  bool use_regex = true;               // kByteLevel: split with kGpt2Pattern
  std::string replacement;             // kMetaspace: stands for ' ' (one character, UTF-8)
  Prepend prepend = Prepend::kAlways;  // kMetaspace
  bool split = true;                   // kMetaspace: a word starts at every replacement character
};

// One decoder step of the SentencePiece family (the byte-level family's
// decoder is ByteLevel, implied); each maps the list of token strings.
struct DecodeStep {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind = Kind::kFuse;
  std::string text;  // kReplace: what is replaced; kStrip: the character; kMetaspace: the replacement
  std::string with;  // kReplace
  size_t start = 0, stop = 0;          // kStrip: at most this many from the start / the end of each token
  Prepend prepend = Prepend::kAlways;  // kMetaspace
};

struct Merge {
  int32_t left = -1, right = -1, merged = -1;
};

struct Spec {
  std::string path;                                // for error messages
  std::unordered_map<std::string, int32_t> vocab;  // token (in the model's alphabet) -> id
  std::vector<Merge> merges;                       // rank = index
  bool ignore_merges = false;                      // a pre-token found whole in the vocab skips merging
  int32_t unk_id = -1;                             // for what is missing from the vocab; -1 drops it (as HF)
  bool fuse_unk = false;
  bool byte_fallback = false;  // characters missing from the vocab become <0xNN> byte tokens
  std::vector<AddedToken> added;
  std::vector<NormStep> norm;
  std::vector<PreStep> pre;
  std::vector<DecodeStep> decoder;
  int32_t bos_id = -1, eos_id = -1;

  bool byte_level() const { return !pre.empty() && pre.back().kind == PreStep::Kind::kByteLevel; }
};

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Spec spec);  // either family, by spec.byte_level()

void replace_all(std::string& s, std::string_view from, std::string_view to);  // left to right, no overlaps

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

// Added tokens as literal strings: the leftmost match wins, then the longest
// (HF's Aho-Corasick with LeftmostLongest). Candidates are bucketed by first
// byte, so text without them costs one table look-up per byte.
class LiteralMatcher {
 public:
  struct Hit {
    size_t pos = std::string_view::npos, len = 0;
    int32_t id = -1;
  };
  void add(const std::string& s, int32_t id);
  bool empty() const { return count_ == 0; }
  Hit find(std::string_view text, size_t from) const;

 private:
  std::array<std::vector<std::pair<std::string, int32_t>>, 256> buckets_;
  size_t count_ = 0;
};

// What both families share. encode: non-normalized added tokens are cut out
// of the raw text, each gap is normalized, normalized added tokens (whose own
// text went through the normalizer) are cut out of that, and what is left
// goes to encode_text. Words are merged by rank and cached.
class BpeBase : public Tokenizer {
 public:
  explicit BpeBase(const Spec& spec);

  std::vector<int32_t> encode(std::string_view text) const final;
  int64_t vocab_size() const final { return vocab_size_; }
  int32_t token_id(std::string_view token) const final;
  int32_t bos_id() const final { return bos_; }
  int32_t eos_id() const final { return eos_; }

 protected:
  // Pre-tokenizes one stretch of normalized text and appends the ids of its
  // words (encode_word); `at_start`: it begins at offset 0 of the input.
  virtual void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& ids) const = 0;
  // A word's symbols before merging; false when they are final (ignore_merges
  // found the whole word in the vocab).
  virtual bool symbols(std::string_view word, std::vector<int32_t>& out) const = 0;

  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;
  void normalize(std::string_view text, std::string& out) const;
  // What decoding starts from: the vocab string, or an added token's text (as HF, in its normalized
  // form when the token is a normalized one). Throws for ids that are neither.
  const std::string& token_text(int32_t id) const;

  std::string path_;
  StrMap<int32_t> vocab_, added_ids_;
  int32_t unk_, bos_, eos_;
  bool fuse_unk_, ignore_merges_;

 private:
  struct MergeRule {
    int32_t rank, merged;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }
  void merge(std::vector<int32_t>& word) const;

  std::unordered_map<uint64_t, MergeRule> merges_;
  std::vector<NormStep> norm_;
  LiteralMatcher raw_added_, norm_added_;
  std::vector<std::string> id_text_;  // id -> token text (added tokens shadow the vocab)
  std::vector<bool> known_;           // false for holes in the id range
  int64_t vocab_size_ = 0;

  mutable std::shared_mutex cache_mu_;
  mutable StrMap<std::vector<int32_t>> cache_;  // word -> ids
};

std::unique_ptr<Tokenizer> make_byte_level_tokenizer(const Spec& spec);  // tokenizer_bytelevel.cpp

}  // namespace longctx::bpe
