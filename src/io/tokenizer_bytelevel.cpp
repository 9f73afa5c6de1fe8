// The byte-level BPE family (GPT-2, Llama 3, Qwen2): each stretch of text is
// split by the pre-tokenizer regexes, each piece's bytes are mapped to GPT-2's
// printable alphabet and merged by rank (BpeBase); decoding maps the alphabet
// back to bytes.
#include <array>
#include <deque>

#include "core/check.h"
#include "io/tokenizer_bpe.h"
#include "io/unicode_nfc.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace longctx::bpe {
namespace {

#define TOK_FAIL(path, ...) FAIL("tokenizer ", path, ": ", __VA_ARGS__)

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

size_t utf8_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

// A PCRE2 pattern used to cut a piece into matches and the gaps between them
// (HF's "Isolated" split behaviour). Subjects are valid UTF-8 (BpeBase::encode
// checks), so PCRE2 is told not to check again.
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
    while (off < s.size()) {
      const auto [b, e] = match(s, off);
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

  std::pair<size_t, size_t> match(std::string_view s, size_t off) const {
    using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;
    thread_local MatchData md(pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    const uint32_t opts = PCRE2_NO_UTF_CHECK;
    int rc = pcre2_match(code_, PCRE2_SPTR(s.data()), s.size(), off, opts, md.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // the interpreter keeps its backtracking state on the heap
      rc = pcre2_match(code_, PCRE2_SPTR(s.data()), s.size(), off, opts | PCRE2_NO_JIT, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return {PCRE2_UNSET, PCRE2_UNSET};
    CHECK(rc >= 0, "tokenizer: regex match failed (", message(rc), ")");
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    return {ov[0], ov[1]};
  }

  pcre2_code* code_ = nullptr;
};

class ByteLevelTokenizer final : public BpeBase {
 public:
  explicit ByteLevelTokenizer(const Spec& spec);

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) {
      token_text(id);  // throws for unknown ids
      out += id_bytes_[id];
    }
    return out;
  }

 private:
  struct Step {
    std::unique_ptr<Regex> regex;  // null: the piece stays whole
    bool add_prefix_space = false;
  };

  void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& ids) const override;
  bool symbols(std::string_view word, std::vector<int32_t>& out) const override;
  void build_decode_table(const Spec& spec);

  std::array<std::string, 256> byte_char_;  // byte -> UTF-8 of its stand-in character
  std::array<int32_t, 256> byte_id_;        // byte -> id of that one-character token, -1 if absent
  std::vector<Step> steps_;
  std::vector<std::string> id_bytes_;  // id -> the bytes it decodes to
};

ByteLevelTokenizer::ByteLevelTokenizer(const Spec& spec) : BpeBase(spec) {
  const auto cps = byte_code_points();
  for (int b = 0; b < 256; b++) {
    unicode::append_utf8(byte_char_[b], cps[b]);
    auto it = vocab_.find(byte_char_[b]);
    byte_id_[b] = it == vocab_.end() ? -1 : it->second;
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
void ByteLevelTokenizer::build_decode_table(const Spec& spec) {
  id_bytes_.assign(size_t(vocab_size()), {});
  std::unordered_map<uint32_t, char> char_byte;
  const auto cps = byte_code_points();
  for (int b = 0; b < 256; b++) char_byte[cps[b]] = char(b);
  auto set = [&](const std::string& tok, int32_t id) {
    std::string bytes;
    for (size_t i = 0; i < tok.size();) {
      uint32_t cp = 0;
      const size_t n = unicode::utf8_next(tok, i, cp);  // JSON-decoded, hence valid
      auto it = n ? char_byte.find(cp) : char_byte.end();
      if (it == char_byte.end()) {
        bytes = tok;
        break;
      }
      bytes += it->second;
      i += n;
    }
    id_bytes_[id] = std::move(bytes);
  };
  for (auto& [tok, id] : spec.vocab) set(tok, id);
  for (const AddedToken& a : spec.added) set(token_text(a.id), a.id);
}

void ByteLevelTokenizer::encode_text(std::string_view text, bool, std::vector<int32_t>& ids) const {
  std::deque<std::string> prefixed;  // pieces with the prefix space, alive until the words are encoded
  std::vector<std::string_view> pieces(1, text), next;
  for (const Step& st : steps_) {
    next.clear();
    for (std::string_view p : pieces) {
      if (st.add_prefix_space && p.front() != ' ') p = prefixed.emplace_back(" ").append(p);
      if (st.regex)
        st.regex->split_isolated(p, next);
      else
        next.push_back(p);
    }
    pieces.swap(next);
  }
  for (std::string_view p : pieces) encode_word(p, ids);
}

bool ByteLevelTokenizer::symbols(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    std::string mapped;
    for (unsigned char c : word) mapped += byte_char_[c];
    if (auto it = vocab_.find(mapped); it != vocab_.end()) {
      out.push_back(it->second);
      return false;
    }
  }
  bool last_unk = false;
  for (unsigned char c : word) {
    const int32_t id = byte_id_[c];
    if (id >= 0) {
      out.push_back(id);
    } else if (unk_ >= 0 && !(fuse_unk_ && last_unk)) {
      out.push_back(unk_);
    }
    last_unk = id < 0;
  }
  return true;
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_tokenizer(const Spec& spec) {
  return std::make_unique<ByteLevelTokenizer>(spec);
}

}  // namespace longctx::bpe
