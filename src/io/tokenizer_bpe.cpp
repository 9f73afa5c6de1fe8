// Byte-level BPE encoding, step for step as HF `tokenizers` does it so the ids
// agree: added tokens are cut out first (leftmost-longest), the rest is split
// by the pre-tokenizer regexes, each piece's bytes are mapped to GPT-2's
// printable alphabet and merged by rank.
#include "io/tokenizer_bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <string_view>

#include "core/check.h"

namespace longctx::bpe {
namespace {

#define TOK_FAIL(path, ...) FAIL("tokenizer ", path, ": ", __VA_ARGS__)

constexpr size_t kMaxCachedPiece = 256;       // longer pieces are rare; caching them only costs memory
constexpr size_t kMaxCacheEntries = 1 << 18;  // then the cache stops growing (HF does the same)

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// other 68 get code points 256, 257, ... in byte order, so that every token
// is a visible string without spaces.
std::array<uint32_t, 256> byte_code_points() {
  std::array<uint32_t, 256> cp{};
  uint32_t extra = 256;
  for (uint32_t b = 0; b < 256; b++) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    cp[b] = printable ? b : extra++;
  }
  return cp;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

size_t utf8_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

// Code points of a (JSON-decoded, hence valid) UTF-8 string.
std::vector<uint32_t> code_points(std::string_view s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    const size_t n = std::min(utf8_len(c), s.size() - i);
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; k++) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3F);
    out.push_back(cp);
    i += n;
  }
  return out;
}

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

// A PCRE2 pattern used to cut a piece into matches and the gaps between them
// (HF's "Isolated" split behaviour).
class Regex {
 public:
  Regex(const std::string& pattern, bool literal, const std::string& path) {
    int err = 0;
    PCRE2_SIZE at = 0;
    const uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    code_ = pcre2_compile(PCRE2_SPTR(pattern.data()), pattern.size(), opts, &err, &at, nullptr);
    if (!code_) TOK_FAIL(path, "split pattern does not compile (", message(err), " at offset ", at, ")");
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // a speed-up only: without JIT pcre2_match interprets
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  void split_isolated(std::string_view s, std::vector<std::string_view>& out) const {
    size_t gap = 0, off = 0;
    bool checked = false;  // PCRE2 validates the UTF-8 once per subject, then is told not to
    while (off < s.size()) {
      const auto [b, e] = match(s, off, checked);
      checked = true;
      if (b == PCRE2_UNSET) break;
      if (e == b) {  // an empty match cuts nothing; step over one character
        off = b + utf8_len(s[b]);
        continue;
      }
      if (b > gap) out.push_back(s.substr(gap, b - gap));
      out.push_back(s.substr(b, e - b));
      gap = off = e;
    }
    if (gap < s.size()) out.push_back(s.substr(gap));
  }

 private:
  static std::string message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return reinterpret_cast<const char*>(buf);
  }

  std::pair<size_t, size_t> match(std::string_view s, size_t off, bool checked) const {
    using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;
    thread_local MatchData md(pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    uint32_t opts = checked ? PCRE2_NO_UTF_CHECK : 0;
    int rc = pcre2_match(code_, PCRE2_SPTR(s.data()), s.size(), off, opts, md.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // the interpreter keeps its backtracking state on the heap
      rc = pcre2_match(code_, PCRE2_SPTR(s.data()), s.size(), off, opts | PCRE2_NO_JIT, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return {PCRE2_UNSET, PCRE2_UNSET};
    if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
      FAIL("tokenizer: text is not valid UTF-8 (", message(rc), ")");
    CHECK(rc >= 0, "tokenizer: regex match failed (", message(rc), ")");
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    return {ov[0], ov[1]};
  }

  pcre2_code* code_ = nullptr;
};

// Added tokens as literal strings: the leftmost match wins, then the longest
// (HF's Aho-Corasick with LeftmostLongest). Candidates are bucketed by first
// byte, so text without them costs one table look-up per byte.
class LiteralMatcher {
 public:
  struct Hit {
    size_t pos = std::string_view::npos, len = 0;
    int32_t id = -1;
  };
  void add(const std::string& s, int32_t id) {
    if (s.empty()) return;
    auto& b = buckets_[uint8_t(s[0])];
    b.emplace_back(s, id);
    std::stable_sort(b.begin(), b.end(), [](auto& x, auto& y) { return x.first.size() > y.first.size(); });
  }
  bool empty() const {
    return std::all_of(buckets_.begin(), buckets_.end(), [](auto& b) { return b.empty(); });
  }
  Hit find(std::string_view text, size_t from) const {
    for (size_t i = from; i < text.size(); i++) {
      for (const auto& [s, id] : buckets_[uint8_t(text[i])])
        if (text.substr(i, s.size()) == s) return {i, s.size(), id};
    }
    return {};
  }

 private:
  std::array<std::vector<std::pair<std::string, int32_t>>, 256> buckets_;
};

using Emit = std::function<void(std::string_view, int32_t)>;  // (text, -1) or ({}, added id)

void split_literals(std::string_view text, const LiteralMatcher& m, const Emit& emit) {
  size_t pos = 0;
  for (auto hit = m.find(text, 0); hit.id >= 0; hit = m.find(text, pos)) {
    if (hit.pos > pos) emit(text.substr(pos, hit.pos - pos), -1);
    emit({}, hit.id);
    pos = hit.pos + hit.len;
  }
  if (pos < text.size()) emit(text.substr(pos), -1);
}

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(Spec spec);

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    std::vector<std::string_view> pieces;
    const Emit encode_gap = [&](std::string_view seg, int32_t id) {
      if (id >= 0) return ids.push_back(id);
      pre_tokenize(seg, pieces);
      for (std::string_view p : pieces) encode_piece(p, ids);
    };
    // Non-normalized added tokens first, then normalized ones in what is left
    // (no normalizer is supported, so both see the raw text).
    split_literals(text, raw_added_, [&](std::string_view seg, int32_t id) {
      if (id >= 0 || norm_added_.empty()) return encode_gap(seg, id);
      split_literals(seg, norm_added_, encode_gap);
    });
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) {
      CHECK(id >= 0 && size_t(id) < id_bytes_.size() && known_[id], "tokenizer ", path_,
            ": cannot decode id ", id, " (not in the vocab)");
      out += id_bytes_[id];
    }
    return out;
  }

  int64_t vocab_size() const override { return int64_t(id_bytes_.size()); }
  int32_t token_id(std::string_view token) const override {
    if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
    if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
    return -1;
  }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }

 private:
  struct Step {
    std::unique_ptr<Regex> regex;  // null: the piece stays whole
    bool add_prefix_space = false;
  };
  struct MergeRule {
    int32_t rank, merged;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }

  void pre_tokenize(std::string_view seg, std::vector<std::string_view>& pieces) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;
  std::vector<int32_t> bpe(std::string_view piece) const;
  void merge(std::vector<int32_t>& word) const;
  void build_decode_table(const Spec& spec);

  std::string path_;
  StrMap<int32_t> vocab_, added_ids_;
  std::unordered_map<uint64_t, MergeRule> merges_;
  std::array<std::string, 256> byte_char_;  // byte -> UTF-8 of its stand-in character
  std::array<int32_t, 256> byte_id_;        // byte -> id of that one-character token, -1 if absent
  bool ignore_merges_;
  int32_t unk_, bos_, eos_;
  bool fuse_unk_;
  LiteralMatcher raw_added_, norm_added_;
  std::vector<Step> steps_;
  std::vector<std::string> id_bytes_;  // id -> the bytes it decodes to
  std::vector<bool> known_;            // false for holes in the id range

  mutable std::shared_mutex cache_mu_;
  mutable StrMap<std::vector<int32_t>> cache_;  // piece bytes -> ids
  // Prefixed copies of pieces live here until the encode that made them ends.
  static thread_local std::deque<std::string> scratch_;
};

thread_local std::deque<std::string> BpeTokenizer::scratch_;

BpeTokenizer::BpeTokenizer(Spec spec)
    : path_(spec.path),
      ignore_merges_(spec.ignore_merges),
      unk_(spec.unk_id),
      bos_(spec.bos_id),
      eos_(spec.eos_id),
      fuse_unk_(spec.fuse_unk) {
  for (auto& [tok, id] : spec.vocab) vocab_.emplace(tok, id);
  for (size_t r = 0; r < spec.merges.size(); r++) {
    const Merge& m = spec.merges[r];
    merges_[pair_key(m.left, m.right)] = {int32_t(r),
                                          m.merged};  // a repeated pair keeps its last rank, as HF
  }
  const auto cps = byte_code_points();
  for (int b = 0; b < 256; b++) {
    byte_char_[b] = utf8(cps[b]);
    auto it = vocab_.find(byte_char_[b]);
    byte_id_[b] = it == vocab_.end() ? -1 : it->second;
  }
  for (const AddedToken& a : spec.added) {
    (a.normalized ? norm_added_ : raw_added_).add(a.content, a.id);
    added_ids_[a.content] = a.id;
  }
  for (const PreStep& p : spec.pre) {
    Step s;
    if (p.kind == PreStep::Kind::kSplit) s.regex = std::make_unique<Regex>(p.pattern, p.literal, path_);
    if (p.kind == PreStep::Kind::kByteLevel && p.use_regex)
      s.regex = std::make_unique<Regex>(kGpt2Pattern, false, path_);
    s.add_prefix_space = p.kind == PreStep::Kind::kByteLevel && p.add_prefix_space;
    steps_.push_back(std::move(s));
  }
  build_decode_table(spec);
}

// HF's ByteLevel decoder: a token whose every character is in the byte
// alphabet becomes those bytes; any other token (e.g. an added token with a
// space in it) is emitted as its own UTF-8. Added tokens shadow the vocab.
void BpeTokenizer::build_decode_table(const Spec& spec) {
  int32_t top = -1;
  for (auto& [tok, id] : spec.vocab) top = std::max(top, id);
  for (const AddedToken& a : spec.added) top = std::max(top, a.id);
  id_bytes_.assign(size_t(top + 1), {});
  known_.assign(size_t(top + 1), false);
  std::unordered_map<uint32_t, char> char_byte;
  const auto cps = byte_code_points();
  for (int b = 0; b < 256; b++) char_byte[cps[b]] = char(b);
  auto set = [&](const std::string& tok, int32_t id) {
    std::string bytes;
    for (uint32_t cp : code_points(tok)) {
      auto it = char_byte.find(cp);
      if (it == char_byte.end()) {
        bytes = tok;
        break;
      }
      bytes += it->second;
    }
    id_bytes_[id] = std::move(bytes);
    known_[id] = true;
  };
  for (auto& [tok, id] : spec.vocab) set(tok, id);
  for (const AddedToken& a : spec.added) set(a.content, a.id);
}

void BpeTokenizer::pre_tokenize(std::string_view seg, std::vector<std::string_view>& pieces) const {
  scratch_.clear();
  pieces.assign(1, seg);
  std::vector<std::string_view> next;
  for (const Step& st : steps_) {
    next.clear();
    for (std::string_view p : pieces) {
      if (st.add_prefix_space && p.front() != ' ') p = scratch_.emplace_back(" ").append(p);
      if (st.regex)
        st.regex->split_isolated(p, next);
      else
        next.push_back(p);
    }
    pieces.swap(next);
  }
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::shared_lock lock(cache_mu_);
    if (auto it = cache_.find(piece); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word = bpe(piece);
  ids.insert(ids.end(), word.begin(), word.end());
  if (cacheable) {
    std::unique_lock lock(cache_mu_);
    if (cache_.size() < kMaxCacheEntries) cache_.emplace(std::string(piece), std::move(word));
  }
}

std::vector<int32_t> BpeTokenizer::bpe(std::string_view piece) const {
  if (ignore_merges_) {
    std::string mapped;
    for (unsigned char c : piece) mapped += byte_char_[c];
    if (auto it = vocab_.find(mapped); it != vocab_.end()) return {it->second};
  }
  std::vector<int32_t> word;
  word.reserve(piece.size());
  bool last_unk = false;
  for (unsigned char c : piece) {
    const int32_t id = byte_id_[c];
    if (id >= 0) {
      word.push_back(id);
    } else if (unk_ >= 0 && !(fuse_unk_ && last_unk)) {
      word.push_back(unk_);
    }
    last_unk = id < 0;
  }
  merge(word);
  return word;
}

// Repeatedly merges the lowest-ranked adjacent pair, leftmost first. A heap
// keyed (rank, position) with lazy deletion keeps long pieces (runs of
// spaces, digits, symbols) at O(n log n); symbols form a linked list.
void BpeTokenizer::merge(std::vector<int32_t>& word) const {
  const int32_t n = int32_t(word.size());
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; i++) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  using Cand = std::pair<int32_t, int32_t>;  // (rank, position of the left symbol)
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  auto rule = [&](int32_t pos) -> const MergeRule* {
    if (pos < 0 || next[pos] < 0) return nullptr;
    auto it = merges_.find(pair_key(word[pos], word[next[pos]]));
    return it == merges_.end() ? nullptr : &it->second;
  };
  auto push = [&](int32_t pos) {
    if (const MergeRule* r = rule(pos)) heap.push({r->rank, pos});
  };
  for (int32_t i = 0; i + 1 < n; i++) push(i);
  while (!heap.empty()) {
    const auto [rank, pos] = heap.top();
    heap.pop();
    const MergeRule* r = word[pos] < 0 ? nullptr : rule(pos);
    if (!r || r->rank != rank) continue;  // stale: a neighbour merged since this was pushed
    const int32_t right = next[pos];
    word[pos] = r->merged;
    word[right] = -1;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    push(prev[pos]);
    push(pos);
  }
  std::erase(word, -1);
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Spec spec) {
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

}  // namespace longctx::bpe
