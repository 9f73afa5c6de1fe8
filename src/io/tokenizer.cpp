// tokenizer.json -> bpe::Spec, with every feature we do not implement turned
// into a one-line error (a tokenizer that silently encodes differently from
// the one a model was trained with would corrupt training data): which
// family a file belongs to (byte-level or SentencePiece-style BPE) follows
// from its pre_tokenizer. Also the byte tokenizer.
#include "io/tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "io/tokenizer_bpe.h"
#include "io/unicode_nfc.h"

namespace longctx {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

#define TOK_FAIL(path, ...) FAIL("tokenizer ", path, ": ", __VA_ARGS__)

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) TOK_FAIL(path, "cannot open (", std::strerror(errno), ")");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

json parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    TOK_FAIL(source, "malformed JSON (", e.what(), ")");
  }
}

// An integer field in [lo, hi]: a JSON integer, never a float cast to one
// (1e30 into an int is undefined behaviour, not an error).
int64_t int_value(const std::string& path, const json& v, int64_t lo, int64_t hi, const std::string& what) {
  if (!v.is_number_integer()) TOK_FAIL(path, what, " must be an integer, got ", v.dump());
  const bool big = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX);
  const int64_t x = big ? INT64_MAX : v.get<int64_t>();
  if (big || x < lo || x > hi) TOK_FAIL(path, what, " ", v.dump(), " is out of range [", lo, ", ", hi, "]");
  return x;
}

// A key that may be absent or null reads as `dflt`.
template <class T>
T opt(const json& o, const char* key, T dflt) {
  auto it = o.find(key);
  return it == o.end() || it->is_null() ? dflt : it->get<T>();
}

bool present(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && !it->is_null();
}

std::string type_of(const json& o) { return o.is_object() ? opt<std::string>(o, "type", "") : ""; }

void parse_vocab(const std::string& path, const json& m, bpe::Spec& s) {
  CHECK(m.contains("vocab") && m["vocab"].is_object(), "tokenizer ", path,
        ": BPE model has no 'vocab' object");
  for (auto& [tok, id] : m["vocab"].items()) {
    s.vocab.emplace(tok, int32_t(int_value(path, id, 0, INT32_MAX, "the vocab id of '" + tok + "'")));
  }
}

// Merges come as "a b" strings (older files) or ["a", "b"] pairs (newer,
// which allows tokens containing spaces).
void parse_merges(const std::string& path, const json& m, bpe::Spec& s) {
  CHECK(m.contains("merges") && m["merges"].is_array(), "tokenizer ", path,
        ": BPE model has no 'merges' list");
  auto id_of = [&](const std::string& tok, size_t rank) {
    auto it = s.vocab.find(tok);
    if (it == s.vocab.end()) TOK_FAIL(path, "merge ", rank, " uses '", tok, "', which is not in the vocab");
    return it->second;
  };
  const json& merges = m["merges"];
  s.merges.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); r++) {
    std::string a, b;
    if (merges[r].is_string()) {
      const std::string line = merges[r].get<std::string>();
      const size_t sp = line.find(' ');
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
        TOK_FAIL(path, "merge ", r, " '", line, "' is not two tokens separated by one space");
      a = line.substr(0, sp), b = line.substr(sp + 1);
    } else if (merges[r].is_array() && merges[r].size() == 2) {
      a = merges[r][0].get<std::string>(), b = merges[r][1].get<std::string>();
    } else {
      TOK_FAIL(path, "merge ", r, " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    s.merges.push_back({id_of(a, r), id_of(b, r), id_of(a + b, r)});
  }
}

void parse_model(const std::string& path, const json& j, bpe::Spec& s) {
  CHECK(j.contains("model") && j["model"].is_object(), "tokenizer ", path, ": no 'model' object");
  const json& m = j["model"];
  // Very old files have no "type"; HF then recognises BPE by its merges.
  const std::string type = m.contains("type") ? type_of(m) : m.contains("merges") ? "BPE" : "?";
  if (type != "BPE") TOK_FAIL(path, "model type '", type, "' is not supported (only BPE)");
  if (present(m, "dropout")) TOK_FAIL(path, "BPE dropout is not supported (it makes encoding random)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!opt<std::string>(m, k, "").empty()) TOK_FAIL(path, "BPE ", k, " is not supported");
  parse_vocab(path, m, s);
  parse_merges(path, m, s);
  s.ignore_merges = opt(m, "ignore_merges", false);
  s.fuse_unk = opt(m, "fuse_unk", false);
  s.byte_fallback = opt(m, "byte_fallback", false);
  if (present(m, "unk_token")) {
    const std::string unk = m["unk_token"].get<std::string>();
    auto it = s.vocab.find(unk);
    if (it == s.vocab.end()) TOK_FAIL(path, "unk_token '", unk, "' is not in the vocab");
    s.unk_id = it->second;
  }
}

std::string pattern_string(const std::string& path, const json& p, const std::string& what) {
  const json& pat = p.at("pattern");
  if (!pat.contains("String"))
    TOK_FAIL(path, what, " with a pattern other than a plain String (", pat.dump(), ") is not supported");
  return pat.at("String").get<std::string>();
}

// "▁" by default; exactly one character.
std::string replacement_char(const std::string& path, const json& p) {
  const std::string r = opt<std::string>(p, "replacement", "\u2581");
  uint32_t cp = 0;
  if (r.empty() || unicode::utf8_next(r, 0, cp) != r.size())
    TOK_FAIL(path, "Metaspace replacement '", r, "' is not one character");
  return r;
}

// prepend_scheme, "always" by default. Older files say add_prefix_space,
// which HF accepts when it agrees (false only with "never").
bpe::Prepend prepend_scheme(const std::string& path, const json& p) {
  const std::string scheme = opt<std::string>(p, "prepend_scheme", "always");
  if (!opt(p, "add_prefix_space", true) && scheme != "never")
    TOK_FAIL(path, "Metaspace add_prefix_space=false does not match prepend_scheme '", scheme, "'");
  if (scheme == "always") return bpe::Prepend::kAlways;
  if (scheme == "first") return bpe::Prepend::kFirst;
  if (scheme == "never") return bpe::Prepend::kNever;
  TOK_FAIL(path, "Metaspace prepend_scheme '", scheme, "' is not supported (only first, always, never)");
}

void parse_pre_step(const std::string& path, const json& p, bpe::Spec& s) {
  const std::string type = type_of(p);
  if (type == "Sequence") {
    for (const json& q : p.at("pretokenizers")) parse_pre_step(path, q, s);
  } else if (type == "ByteLevel") {
    bpe::PreStep st;
    st.add_prefix_space = opt(p, "add_prefix_space", false);
    st.use_regex = opt(p, "use_regex", true);
    s.pre.push_back(st);
  } else if (type == "Split") {
    const std::string behavior = opt<std::string>(p, "behavior", "");
    if (behavior != "Isolated")
      TOK_FAIL(path, "Split behavior '", behavior, "' is not supported (only Isolated)");
    if (opt(p, "invert", false)) TOK_FAIL(path, "Split with invert=true is not supported");
    const json& pat = p.at("pattern");
    bpe::PreStep st;
    st.kind = bpe::PreStep::Kind::kSplit;
    st.literal = !pat.contains("Regex");
    st.pattern = pat.at(st.literal ? "String" : "Regex").get<std::string>();
    s.pre.push_back(st);
  } else if (type == "Metaspace") {
    bpe::PreStep st;
    st.kind = bpe::PreStep::Kind::kMetaspace;
    st.replacement = replacement_char(path, p);
    st.prepend = prepend_scheme(path, p);
    st.split = opt(p, "split", true);
    s.pre.push_back(st);
  } else {
    TOK_FAIL(path, "pre_tokenizer type '", type.empty() ? p.dump() : type,
             "' is not supported (only ByteLevel, Split, Metaspace, Sequence)");
  }
}

// Byte-level: regex Splits, then exactly one ByteLevel last (the byte mapping
// happens there, so a regex after it would see mapped text; real files put
// it last). SentencePiece-style: nothing, or one Metaspace.
void parse_pre_tokenizer(const std::string& path, const json& j, bpe::Spec& s) {
  if (present(j, "pre_tokenizer")) parse_pre_step(path, j["pre_tokenizer"], s);
  size_t byte_level = 0, metaspace = 0;
  for (const bpe::PreStep& st : s.pre) {
    byte_level += st.kind == bpe::PreStep::Kind::kByteLevel;
    metaspace += st.kind == bpe::PreStep::Kind::kMetaspace;
  }
  if (metaspace) {
    if (s.pre.size() != 1)
      TOK_FAIL(path, "a Metaspace pre_tokenizer together with other pre-tokenizers is not supported");
  } else if (!s.pre.empty() && (byte_level != 1 || !s.byte_level())) {
    TOK_FAIL(path, "pre_tokenizer must end with exactly one ByteLevel step (byte-level BPE), ",
             "or be null or Metaspace (SentencePiece-style BPE)");
  }
  if (s.byte_level() && s.byte_fallback)
    TOK_FAIL(path, "BPE byte_fallback with a ByteLevel pre_tokenizer is not supported");
}

void parse_normalizer_step(const std::string& path, const json& n, bpe::Spec& s) {
  const std::string type = type_of(n);
  bpe::NormStep st;
  if (type == "Sequence") {
    for (const json& q : n.at("normalizers")) parse_normalizer_step(path, q, s);
    return;
  } else if (type == "NFC") {
    st.kind = bpe::NormStep::Kind::kNfc;
  } else if (type == "Prepend") {
    st.kind = bpe::NormStep::Kind::kPrepend;
    st.text = n.at("prepend").get<std::string>();
  } else if (type == "Replace") {
    st.kind = bpe::NormStep::Kind::kReplace;
    st.text = pattern_string(path, n, "Replace normalizer");
    st.with = n.at("content").get<std::string>();
  } else {
    TOK_FAIL(path, "normalizer '", type.empty() ? n.dump() : type,
             "' is not supported (only NFC, Prepend, Replace, Sequence)");
  }
  s.norm.push_back(st);
}

void parse_decoder_step(const std::string& path, const json& d, bpe::Spec& s) {
  const std::string type = type_of(d);
  bpe::DecodeStep st;
  using K = bpe::DecodeStep::Kind;
  if (type == "Sequence") {
    for (const json& q : d.at("decoders")) parse_decoder_step(path, q, s);
    return;
  } else if (type == "Replace") {
    st.kind = K::kReplace;
    st.text = pattern_string(path, d, "Replace decoder");
    st.with = d.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    st.kind = K::kByteFallback;
  } else if (type == "Fuse") {
    st.kind = K::kFuse;
  } else if (type == "Strip") {
    st.kind = K::kStrip;
    st.text = d.at("content").get<std::string>();
    st.start = size_t(int_value(path, d.at("start"), 0, INT32_MAX, "the Strip decoder's start"));
    st.stop = size_t(int_value(path, d.at("stop"), 0, INT32_MAX, "the Strip decoder's stop"));
    uint32_t cp = 0;
    if (st.text.empty() || unicode::utf8_next(st.text, 0, cp) != st.text.size())
      TOK_FAIL(path, "Strip decoder content '", st.text, "' is not one character");
  } else if (type == "Metaspace") {
    st.kind = K::kMetaspace;
    st.text = replacement_char(path, d);
    st.prepend = prepend_scheme(path, d);
  } else {
    TOK_FAIL(
        path, "decoder '", type.empty() ? d.dump() : type,
        "' is not supported with this pre_tokenizer (only Replace, ByteFallback, Fuse, Strip, Metaspace, ",
        "Sequence; ByteLevel goes with a ByteLevel pre_tokenizer)");
  }
  s.decoder.push_back(st);
}

void parse_normalizer_and_decoder(const std::string& path, const json& j, bpe::Spec& s) {
  if (present(j, "normalizer")) parse_normalizer_step(path, j["normalizer"], s);
  const std::string dec = present(j, "decoder") ? type_of(j["decoder"]) : "null";
  if (s.byte_level()) {
    if (dec != "ByteLevel")
      TOK_FAIL(path, "decoder '", dec, "' is not supported with a ByteLevel pre_tokenizer (only ByteLevel)");
    for (const bpe::NormStep& n : s.norm)
      if (n.kind != bpe::NormStep::Kind::kNfc)
        TOK_FAIL(path,
                 "normalizer Prepend/Replace with a ByteLevel pre_tokenizer is not supported (only NFC)");
  } else {
    if (dec == "null") TOK_FAIL(path, "decoder null is not supported (HF would join tokens with spaces)");
    parse_decoder_step(path, j["decoder"], s);
  }
}

// HF ignores the ids written in "added_tokens" and numbers them again on
// load: a token in the vocab keeps its vocab id, others take the vocab's size
// or the next id after the highest added one. Files HF wrote agree; a file
// that does not would give other ids than the model was trained with.
int32_t hf_added_id(const bpe::Spec& s, const std::string& content) {
  for (const bpe::AddedToken& a : s.added)
    if (a.content == content) return a.id;
  if (auto it = s.vocab.find(content); it != s.vocab.end()) return it->second;
  const int32_t n = int32_t(s.vocab.size());
  int32_t top = -1;
  for (const bpe::AddedToken& a : s.added) top = std::max(top, a.id);
  return top < 0 ? n : top >= n || n == 0 ? top + 1 : n;
}

void parse_added(const std::string& path, const json& j, bpe::Spec& s) {
  if (!present(j, "added_tokens")) return;
  for (const json& a : j["added_tokens"]) {
    bpe::AddedToken t;
    t.content = a.at("content").get<std::string>();
    t.id = int32_t(int_value(path, a.at("id"), 0, INT32_MAX, "the id of added token '" + t.content + "'"));
    if (t.id != hf_added_id(s, t.content))
      TOK_FAIL(path, "added token '", t.content, "' has id ", t.id,
               " but the tokenizers package would number it ", hf_added_id(s, t.content),
               " (inconsistent file)");
    t.normalized = opt(a, "normalized", !opt(a, "special", false));
    for (const char* k : {"lstrip", "rstrip", "single_word"})
      if (opt(a, k, false))
        TOK_FAIL(path, "added token '", t.content, "' uses ", k, ", which is not supported");
    s.added.push_back(std::move(t));
  }
}

// tokenizer.json does not say which token is BOS/EOS; HF keeps that in
// tokenizer_config.json beside it. Without one, well-known names decide.
void find_bos_eos(const std::string& path, std::string_view config_text, bpe::Spec& s) {
  auto id_of = [&](const std::string& tok) {
    for (const bpe::AddedToken& a : s.added)
      if (a.content == tok) return a.id;
    auto it = s.vocab.find(tok);
    return it == s.vocab.end() ? -1 : it->second;
  };
  auto first_of = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (int32_t id = id_of(n); id >= 0) return id;
    return -1;
  };
  s.bos_id = first_of({"<|begin_of_text|>", "<s>", "<|bos|>", "<|startoftext|>", "<bos>"});
  s.eos_id = first_of({"<|end_of_text|>", "</s>", "<|eos|>", "<|endoftext|>", "<eos>"});
  if (config_text.empty()) return;
  const std::string cfg_path = (fs::path(path).parent_path() / "tokenizer_config.json").string();
  const json cfg = parse_json(config_text, cfg_path);
  if (!cfg.is_object()) return;
  auto named = [&](const char* key, int32_t& id) {
    if (!present(cfg, key)) return;
    const json& v = cfg[key];  // "<s>" or {"content": "<s>", ...}
    const std::string tok = v.is_string() ? v.get<std::string>() : opt<std::string>(v, "content", "");
    if (id_of(tok) >= 0) id = id_of(tok);
  };
  named("bos_token", s.bos_id);
  named("eos_token", s.eos_id);
}

// Ids 0..255 are the bytes; three specials follow.
class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr std::string_view kSpecial[3] = {"<|bos|>", "<|eos|>", "<|pad|>"};

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (size_t i = 0; i < text.size(); i++) {
      const int32_t sp = text[i] == '<' ? special_at(text.substr(i)) : -1;
      ids.push_back(sp >= 0 ? sp : int32_t(uint8_t(text[i])));
      if (sp >= 0) i += kSpecial[sp - 256].size() - 1;
    }
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) {
      CHECK(id >= 0 && id < 259, "byte tokenizer: cannot decode id ", id, " (vocab is 259)");
      if (id < 256)
        out += char(id);
      else
        out += kSpecial[id - 256];
    }
    return out;
  }
  int64_t vocab_size() const override { return 259; }
  int32_t token_id(std::string_view token) const override {
    if (token.size() == 1) return uint8_t(token[0]);
    for (int k = 0; k < 3; k++)
      if (token == kSpecial[k]) return 256 + k;
    return -1;
  }
  int32_t bos_id() const override { return 256; }
  int32_t eos_id() const override { return 257; }

 private:
  static int32_t special_at(std::string_view s) {
    for (int k = 0; k < 3; k++)
      if (s.starts_with(kSpecial[k])) return 256 + k;
    return -1;
  }
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_from_json(std::string_view json_text, const std::string& source,
                                                    std::string_view config_text) {
  const std::string& path = source;
  const json j = parse_json(json_text, path);
  bpe::Spec s;
  s.path = path;
  try {
    CHECK(j.is_object(), "tokenizer ", path, ": not a JSON object");
    parse_model(path, j, s);
    parse_pre_tokenizer(path, j, s);
    parse_normalizer_and_decoder(path, j, s);
    parse_added(path, j, s);
    find_bos_eos(path, config_text, s);
  } catch (const json::exception& e) {  // a field of the wrong JSON type or missing
    TOK_FAIL(path, "unexpected structure (", e.what(), ")");
  }
  return bpe::make_bpe_tokenizer(std::move(s));
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const std::string text = read_file(path);
  const fs::path cfg = fs::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  const std::string cfg_text = fs::is_regular_file(cfg, ec) ? read_file(cfg.string()) : std::string();
  return load_tokenizer_from_json(text, path, cfg_text);
}

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace longctx
