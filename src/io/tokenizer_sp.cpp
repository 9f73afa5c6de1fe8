// The SentencePiece-style BPE family, as HF `tokenizers` runs it: a word's
// symbols are its Unicode characters (HF's BPE merge_word with byte_fallback
// and unk), merged by rank (BpeBase); decoding runs the decoder chain.
#include "io/tokenizer_sp.h"

#include <algorithm>
#include <array>
#include <cstdio>

#include "core/check.h"
#include "io/unicode_nfc.h"

namespace longctx::bpe {
namespace {

int hex_digit(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

// "<0xNN>" -> NN, else -1. Like HF (Rust's u8::from_str_radix), the two
// characters may be hex digits of either case, or '+' and one digit.
int byte_token(std::string_view t) {
  if (t.size() != 6 || !t.starts_with("<0x") || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  if (t[3] == '+') return lo;
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Strips up to `start` leading and `stop` trailing copies of the character `c`.
void strip(std::string& t, std::string_view c, size_t start, size_t stop) {
  size_t b = 0, e = t.size();
  for (size_t k = 0; k < start && b + c.size() <= e && t.compare(b, c.size(), c) == 0; k++) b += c.size();
  for (size_t k = 0; k < stop && e >= b + c.size() && t.compare(e - c.size(), c.size(), c) == 0; k++)
    e -= c.size();
  t = t.substr(b, e - b);
}

class SentencePieceTokenizer final : public BpeBase {
 public:
  explicit SentencePieceTokenizer(const Spec& spec);

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) tokens.push_back(token_text(id));
    return run_decoder(decoder_, std::move(tokens));
  }

 private:
  void encode_text(std::string_view text, bool at_start, std::vector<int32_t>& ids) const override;
  bool symbols(std::string_view word, std::vector<int32_t>& out) const override;

  bool byte_fallback_;
  std::array<int32_t, 256> byte_id_;  // byte -> id of its <0xNN> token, -1 if absent
  bool metaspace_ = false;
  PreStep meta_;
  std::vector<DecodeStep> decoder_;
};

SentencePieceTokenizer::SentencePieceTokenizer(const Spec& spec)
    : BpeBase(spec), byte_fallback_(spec.byte_fallback), decoder_(spec.decoder) {
  for (int b = 0; b < 256; b++) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = vocab_.find(std::string_view(name));
    byte_id_[b] = it == vocab_.end() ? -1 : it->second;
  }
  CHECK(spec.pre.size() <= 1 && (spec.pre.empty() || spec.pre[0].kind == PreStep::Kind::kMetaspace),
        "tokenizer ", path_, ": SentencePiece-style BPE takes no pre-tokenizer or one Metaspace");
  if (!spec.pre.empty()) meta_ = spec.pre[0], metaspace_ = true;
}

// HF's Metaspace: spaces become the replacement, which is put in front as the
// prepend scheme says (unless the text starts with one), and with `split` a
// word starts at every replacement character.
void SentencePieceTokenizer::encode_text(std::string_view text, bool at_start,
                                         std::vector<int32_t>& ids) const {
  if (!metaspace_) return encode_word(text, ids);
  const std::string& r = meta_.replacement;
  std::string s;
  s.reserve(text.size() + 8);
  for (char c : text) {
    if (c == ' ')
      s += r;
    else
      s += c;
  }
  const Prepend p = meta_.prepend;
  if ((p == Prepend::kAlways || (p == Prepend::kFirst && at_start)) && !s.starts_with(r)) s.insert(0, r);
  if (!meta_.split) return encode_word(s, ids);
  const std::string_view v = s;
  size_t from = 0;
  for (size_t at = v.find(r, 1); at != std::string_view::npos; at = v.find(r, at + r.size())) {
    encode_word(v.substr(from, at - from), ids);
    from = at;
  }
  encode_word(v.substr(from), ids);
}

// HF's merge_word: a character in the vocab is its token; one that is not
// becomes its UTF-8 bytes' <0xNN> tokens when byte_fallback has them all, else
// the unk token, consecutive unks fused into one with fuse_unk. (A pending unk
// is only written out at the next known character or the end, so byte tokens
// can come before it, as in HF.)
bool SentencePieceTokenizer::symbols(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return false;
    }
  }
  bool pending_unk = false;
  for (size_t i = 0; i < word.size();) {
    uint32_t cp = 0;
    const size_t n = std::max<size_t>(1, unicode::utf8_next(word, i, cp));  // valid: encode checked
    const std::string_view ch = word.substr(i, n);
    i += n;
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      if (pending_unk) out.push_back(unk_), pending_unk = false;
      out.push_back(it->second);
      continue;
    }
    if (byte_fallback_ &&
        std::all_of(ch.begin(), ch.end(), [&](char b) { return byte_id_[uint8_t(b)] >= 0; })) {
      for (char b : ch) out.push_back(byte_id_[uint8_t(b)]);
      continue;
    }
    if (unk_ >= 0) {
      if (pending_unk && !fuse_unk_) out.push_back(unk_);
      pending_unk = true;
    }
  }
  if (pending_unk) out.push_back(unk_);
  return true;
}

}  // namespace

std::string run_decoder(const std::vector<DecodeStep>& steps, std::vector<std::string> tokens) {
  for (const DecodeStep& d : steps) {
    switch (d.kind) {
      case DecodeStep::Kind::kReplace:
        for (std::string& t : tokens) replace_all(t, d.text, d.with);
        break;
      case DecodeStep::Kind::kByteFallback: {  // runs of byte tokens become one token of those bytes
        std::vector<std::string> out;
        std::string bytes;
        bool in_run = false;
        for (std::string& t : tokens) {
          if (const int b = byte_token(t); b >= 0) {
            bytes += char(b), in_run = true;
            continue;
          }
          if (in_run) out.push_back(std::move(bytes)), bytes.clear(), in_run = false;
          out.push_back(std::move(t));
        }
        if (in_run) out.push_back(std::move(bytes));
        tokens.swap(out);
        break;
      }
      case DecodeStep::Kind::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecodeStep::Kind::kStrip:
        for (std::string& t : tokens) strip(t, d.text, d.start, d.stop);
        break;
      case DecodeStep::Kind::kMetaspace:  // the first token loses its replacements unless nothing was
                                          // prepended
        for (size_t i = 0; i < tokens.size(); i++)
          replace_all(tokens[i], d.text, i == 0 && d.prepend != Prepend::kNever ? "" : " ");
        break;
    }
  }
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const Spec& spec) {
  return std::make_unique<SentencePieceTokenizer>(spec);
}

}  // namespace longctx::bpe
