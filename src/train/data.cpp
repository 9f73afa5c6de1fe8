#include "train/data.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "io/npy.h"
#include "io/token_shards.h"
#include "io/tokenizer.h"
#include "ops/lm_head_loss.h"
#include "train/jsonl_doc.h"
#include "train/passkey.h"

namespace longctx {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Per-token flags a stream attaches to the tokens it hands out.
constexpr uint8_t kDocEnd = 1;  // ends a document (eos): the next token starts another one
constexpr uint8_t kCut = 2;     // last token of a file: the next token is not its continuation
constexpr uint8_t kNoLoss = 4;  // predicting this token does not count (a prompt, a template's text)

// Tokens in order with their flags, endless (wraps around at the end).
class TokenStream {
 public:
  virtual ~TokenStream() = default;
  // Copies the next n tokens and their flags and moves past them.
  virtual void take(int64_t n, int32_t* ids, uint8_t* flags) = 0;
  // The next token and its flags, without moving.
  virtual void peek(int32_t* id, uint8_t* flags) = 0;
  virtual json state() const = 0;
  virtual void restore(const json& s) = 0;
  virtual int64_t vocab_needed() const = 0;
};

// Row r of b from T + 1 stream tokens. A label that would cross a file end, or
// (packing) a document end, is ignored: attention cannot see the context that
// would justify it. Packing restarts positions and the doc id after each end;
// a document that continues from the previous row restarts at 0 too, which
// RoPE cannot tell apart (scores depend only on position differences, and the
// earlier part is in another row) and which keeps positions below T.
void build_row(const int32_t* ids, const uint8_t* flags, int64_t T, bool pack, Batch& b, int64_t r) {
  const size_t o = size_t(r * T);
  int32_t pos = 0, doc = 0;
  for (int64_t t = 0; t < T; t++) {
    const bool end = (flags[t] & kCut) || (pack && (flags[t] & kDocEnd));
    b.inputs[o + t] = ids[t];
    b.labels[o + t] = end || (flags[t + 1] & kNoLoss) ? kIgnoreIndex : ids[t + 1];
    b.positions[o + t] = pos;
    b.doc_ids[o + t] = doc;
    if (pack && end) {
      pos = 0, doc++;
    } else {
      pos++;
    }
  }
}

// The most tokens one batch may hold: 2^40 int32s are 4 TiB per field, far
// past any machine; larger is a corrupt config, and B * T could overflow.
constexpr int64_t kMaxBatchTokens = int64_t(1) << 40;

void shape_batch(Batch& b, int64_t B, int64_t T) {
  CHECK(B >= 1 && T >= 1, "data: batch shape (", B, ", ", T, ") must be positive");
  CHECK(B <= kMaxBatchTokens / T, "data: batch shape (", B, ", ", T, ") is absurd (more than ",
        kMaxBatchTokens, " tokens)");
  b.B = B, b.T = T;
  for (auto* v : {&b.inputs, &b.labels, &b.positions, &b.doc_ids}) v->assign(size_t(B * T), 0);
}

// Rows are windows of T + 1 tokens with stride T: a row's last token is the
// next row's first input, so every token gets predicted exactly once.
class StreamSource : public DataSource {
 public:
  StreamSource(std::unique_ptr<TokenStream> s, bool pack) : s_(std::move(s)), pack_(pack) {}

  void next(Batch& b, int64_t B, int64_t T) override {
    shape_batch(b, B, T);
    ids_.resize(size_t(T + 1));
    flags_.resize(size_t(T + 1));
    for (int64_t r = 0; r < B; r++) {
      s_->take(T, ids_.data(), flags_.data());
      s_->peek(&ids_[size_t(T)], &flags_[size_t(T)]);
      build_row(ids_.data(), flags_.data(), T, pack_, b, r);
    }
  }
  json state() const override { return s_->state(); }
  void restore(const json& s) override { s_->restore(s); }
  int64_t vocab_needed() const override { return s_->vocab_needed(); }

 private:
  std::unique_ptr<TokenStream> s_;
  bool pack_;
  std::vector<int32_t> ids_;  // (T + 1)
  std::vector<uint8_t> flags_;
};

void check_kind(const json& s, const char* kind) {
  const auto it = s.is_object() ? s.find("kind") : s.end();
  const std::string got = it != s.end() && it->is_string() ? it->get<std::string>() : "?";
  CHECK(got == kind, "data: cannot restore a '", got, "' data state into a ", kind, " source");
}

// Field k of a saved data state: an integer in [lo, hi].
int64_t state_int(const json& s, const char* k, int64_t lo, int64_t hi = INT64_MAX) {
  const auto it = s.find(k);
  CHECK(it != s.end() && it->is_number_integer(), "data: the saved data state has no integer '", k, "' (got ",
        it == s.end() ? std::string("nothing") : it->dump().substr(0, 60), ")");
  const bool big = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX);
  const int64_t v = big ? INT64_MAX : it->get<int64_t>();
  CHECK(!big && v >= lo && v <= hi, "data: the saved data state's '", k, "' is ", it->dump(), ", outside [",
        lo, ", ", hi, "]");
  return v;
}

// ---- token files -----------------------------------------------------------

// One token file: .npy read whole, .bin memory-mapped.
struct TokenFile {
  std::string path;
  std::vector<int32_t> ids;           // .npy
  std::unique_ptr<TokenShard> shard;  // .bin
  int64_t size() const { return shard ? shard->size() : int64_t(ids.size()); }
  void read(int64_t at, int64_t n, int32_t* out) const {
    if (shard) {
      shard->read(at, n, out);
    } else {
      std::copy_n(ids.data() + at, n, out);
    }
  }
};

TokenFile open_token_file(const std::string& path) {
  const std::string ext = fs::path(path).extension().string();
  TokenFile f{path, {}, nullptr};
  if (ext == ".bin") {
    f.shard = std::make_unique<TokenShard>(path);
  } else if (ext == ".npy") {
    f.ids = load_tokens_npy(path).ids;
  } else {
    FAIL("data ", path, ": unknown token file type '", ext, "' (want .npy or .bin)");
  }
  return f;
}

// The largest id in f. One pass at startup, so that a bad id fails the run
// before the first step rather than hours in, and vocab_needed() is exact.
int32_t scan_ids(const TokenFile& f, int64_t model_vocab) {
  constexpr int64_t kChunk = int64_t(1) << 20;
  std::vector<int32_t> buf(size_t(std::min(kChunk, f.size())));
  int32_t max_id = -1;
  for (int64_t at = 0; at < f.size(); at += kChunk) {
    const int64_t n = std::min(kChunk, f.size() - at);
    f.read(at, n, buf.data());
    for (int64_t i = 0; i < n; i++) {
      const int32_t id = buf[size_t(i)];
      if (id < 0) FAIL("data ", f.path, ": token id ", uint32_t(id), " at offset ", at + i, " exceeds int32");
      if (model_vocab > 0 && id >= model_vocab)
        FAIL("data ", f.path, ": token id ", id, " at offset ", at + i,
             " is beyond the model's vocabulary of ", model_vocab, " tokens");
      max_id = std::max(max_id, id);
    }
  }
  return max_id;
}

// The files one after another as a single circular stream.
class FileStream : public TokenStream {
 public:
  FileStream(const std::vector<std::string>& paths, int32_t eos, int64_t model_vocab) : eos_(eos) {
    for (const std::string& p : paths) {
      TokenFile f = open_token_file(p);
      max_id_ = std::max(max_id_, scan_ids(f, model_vocab));
      if (f.size() == 0) continue;
      starts_.push_back(total_);
      total_ += f.size();
      files_.push_back(std::move(f));
    }
    CHECK(total_ >= 2, "data: the token files hold ", total_, " tokens; at least 2 are needed");
  }

  void take(int64_t n, int32_t* ids, uint8_t* flags) override {
    while (n > 0) {
      const size_t f = file_at(offset_);
      const int64_t local = offset_ - starts_[f], k = std::min(n, files_[f].size() - local);
      files_[f].read(local, k, ids);
      mark(ids, flags, k, local + k == files_[f].size());
      offset_ += k;
      if (offset_ == total_) offset_ = 0, epoch_++;
      ids += k, flags += k, n -= k;
    }
  }

  void peek(int32_t* id, uint8_t* flags) override {
    const size_t f = file_at(offset_);
    const int64_t local = offset_ - starts_[f];
    files_[f].read(local, 1, id);
    mark(id, flags, 1, local + 1 == files_[f].size());
  }

  json state() const override {
    return {{"kind", "tokens"}, {"offset", offset_}, {"epoch", epoch_}, {"tokens", total_}};
  }

  void restore(const json& s) override {
    check_kind(s, "tokens");
    const int64_t tokens = state_int(s, "tokens", 0), offset = state_int(s, "offset", 0);
    const int64_t epoch = state_int(s, "epoch", 0);
    CHECK(tokens == total_, "data: the saved data state is for ", tokens, " tokens but the token files hold ",
          total_, "; the data changed since the checkpoint");
    CHECK(offset < total_, "data: saved offset ", offset, " outside the ", total_, " tokens");
    offset_ = offset;
    epoch_ = epoch;
  }

  int64_t vocab_needed() const override { return int64_t(max_id_) + 1; }

 private:
  size_t file_at(int64_t offset) const {
    return size_t(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin() - 1);
  }
  void mark(const int32_t* ids, uint8_t* flags, int64_t n, bool file_end) const {
    for (int64_t i = 0; i < n; i++) flags[i] = eos_ >= 0 && ids[i] == eos_ ? kDocEnd : 0;
    if (file_end) flags[n - 1] |= kCut;
  }

  std::vector<TokenFile> files_;
  std::vector<int64_t> starts_;  // stream offset of each file's first token
  int64_t total_ = 0, offset_ = 0, epoch_ = 0;
  int32_t eos_, max_id_ = -1;
};

// ---- jsonl -----------------------------------------------------------------

bool blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(),
                     [](char ch) { return std::isspace(static_cast<unsigned char>(ch)); });
}

// Documents from JSON lines, tokenised one at a time as the stream reaches
// them: only the current document is in memory, whatever the file size.
class JsonlStream : public TokenStream {
 public:
  JsonlStream(std::vector<std::string> paths, std::unique_ptr<Tokenizer> tok, int32_t eos, std::string tmpl)
      : paths_(std::move(paths)), tok_(std::move(tok)), eos_(eos), template_(std::move(tmpl)) {
    open_file(0);
    ensure_doc();  // a malformed first line fails at startup
  }

  void take(int64_t n, int32_t* ids, uint8_t* flags) override {
    while (n > 0) {
      ensure_doc();
      const int64_t k = std::min(n, int64_t(doc_.size() - idx_));
      std::copy_n(doc_.data() + idx_, k, ids);
      for (int64_t i = 0; i < k; i++) flags[i] = loss_[idx_ + size_t(i)] ? 0 : kNoLoss;
      idx_ += size_t(k);
      if (idx_ == doc_.size()) flags[k - 1] |= kDocEnd;
      ids += k, flags += k, n -= k;
    }
  }

  void peek(int32_t* id, uint8_t* flags) override {
    ensure_doc();
    *id = doc_[idx_];
    *flags = uint8_t((idx_ + 1 == doc_.size() ? kDocEnd : 0) | (loss_[idx_] ? 0 : kNoLoss));
  }

  // Where the current document's line starts, and how far into its tokens:
  // resume re-reads and re-tokenises that one line only.
  json state() const override {
    return {{"kind", "jsonl"},   {"files", paths_.size()}, {"file", file_},  {"offset", doc_offset_},
            {"line", doc_line_}, {"token", idx_},          {"epoch", epoch_}};
  }

  void restore(const json& s) override {
    check_kind(s, "jsonl");
    const int64_t files = state_int(s, "files", 0), file = state_int(s, "file", 0);
    const int64_t offset = state_int(s, "offset", 0), line = state_int(s, "line", 1);
    const int64_t token = state_int(s, "token", 0), epoch = state_int(s, "epoch", 0);
    CHECK(files == int64_t(paths_.size()) && file < files, "data: the saved data state is for ", files,
          " jsonl files but ", paths_.size(), " are configured; the data changed since the checkpoint");
    open_file(size_t(file));
    in_.seekg(std::streamoff(offset));
    next_offset_ = offset;
    line_no_ = line - 1;
    CHECK(in_ && read_doc() && doc_line_ == line, "data ", paths_[size_t(file)],
          ": no document at the saved line ", line, "; the data changed since the checkpoint");
    CHECK(uint64_t(token) < doc_.size(), "data ", paths_[size_t(file)], ":", doc_line_, ": saved token ",
          token, " is past the document's ", doc_.size(), " tokens; the data or tokenizer changed");
    idx_ = size_t(token);
    epoch_ = epoch;
  }

  int64_t vocab_needed() const override { return std::max(tok_->vocab_size(), int64_t(eos_) + 1); }

 private:
  void open_file(size_t f) {
    in_ = std::ifstream(paths_[f], std::ios::binary);
    CHECK(in_, "data ", paths_[f], ": cannot open (", std::strerror(errno), ")",
          fs::exists(paths_[f]) ? "" : "; it was there when the run started");
    file_ = f;
    next_offset_ = 0, line_no_ = 0;
  }

  // The next non-blank line of the current file as a document; false at its end.
  bool read_doc() {
    std::string line;
    while (std::getline(in_, line)) {
      const int64_t at = next_offset_;
      next_offset_ += int64_t(line.size()) + 1;  // counted, not tellg(): no syscall per line
      line_no_++;
      if (blank(line)) continue;
      tokenize(line);
      doc_offset_ = at, doc_line_ = line_no_, idx_ = 0;
      return true;
    }
    // the end of the file, or a read that failed (a bad disk): never taken for an end
    CHECK(!in_.bad(), "data ", paths_[file_], ": reading after line ", line_no_, " failed (",
          std::strerror(errno), ")");
    return false;
  }

  void ensure_doc() {
    size_t ends = 0;
    while (idx_ >= doc_.size()) {
      if (read_doc()) return;
      // More file ends than files without a document: every file was read whole.
      CHECK(++ends <= paths_.size(), "data: no documents in the ", paths_.size(), " jsonl file(s), first ",
            paths_[0]);
      if (file_ + 1 == paths_.size()) epoch_++;
      open_file((file_ + 1) % paths_.size());
    }
  }

  // The line's document into doc_ and loss_ (text, prompt/completion or messages).
  void tokenize(const std::string& line) {
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
      FAIL("jsonl ", paths_[file_], ":", line_no_, ": malformed JSON (", e.what(), ")");
    }
    JsonlDoc d = jsonl_doc(j, *tok_, eos_, template_, str_cat("jsonl ", paths_[file_], ":", line_no_));
    doc_ = std::move(d.ids), loss_ = std::move(d.loss);
  }

  std::vector<std::string> paths_;
  std::unique_ptr<Tokenizer> tok_;
  int32_t eos_;
  std::ifstream in_;
  size_t file_ = 0;
  int64_t next_offset_ = 0, line_no_ = 0;  // the reader: byte offset and number of the next line
  std::string template_;                   // data.template: how "messages" records are rendered
  std::vector<int32_t> doc_;               // the current document's tokens, eos last
  std::vector<uint8_t> loss_;              // per token of doc_: 1 when predicting it counts
  size_t idx_ = 0;                         // next token of doc_
  int64_t doc_offset_ = 0, doc_line_ = 0, epoch_ = 0;
};

// ---- construction ----------------------------------------------------------

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& path) {
  return path.empty() ? make_byte_tokenizer() : load_tokenizer(path);
}

void check_vocab(int64_t needed, int64_t model_vocab, const std::string& what) {
  if (model_vocab > 0 && needed > model_vocab)
    FAIL("data: ", what, " needs a vocabulary of ", needed, " tokens but the model has ", model_vocab);
}

// Every source as make_data_source hands it out: a saved state that is not
// what the source wrote (a hand-edited or corrupt state.json) is a one-line
// error, whichever JSON access of the source's restore() trips over it.
class CheckedRestore : public DataSource {
 public:
  explicit CheckedRestore(std::unique_ptr<DataSource> s) : s_(std::move(s)) {}
  void next(Batch& b, int64_t B, int64_t T) override { s_->next(b, B, T); }
  json state() const override { return s_->state(); }
  void restore(const json& st) override {
    try {
      s_->restore(st);
    } catch (const json::exception& e) {
      std::string got = st.dump();
      if (got.size() > 120) got = got.substr(0, 120) + "...";
      FAIL("data: the saved data state is malformed (", e.what(), "): ", got);
    }
  }
  int64_t vocab_needed() const override { return s_->vocab_needed(); }

 private:
  std::unique_ptr<DataSource> s_;
};

std::vector<std::string> data_extensions(const std::string& kind) {
  if (kind == "jsonl") return {".jsonl"};
  return {".bin", ".npy"};
}

}  // namespace

int64_t Batch::label_count() const {
  return int64_t(std::count_if(labels.begin(), labels.end(), [](int32_t l) { return l != kIgnoreIndex; }));
}

std::vector<std::string> expand_data_paths(const std::vector<std::string>& paths, const std::string& kind) {
  const std::vector<std::string> exts = data_extensions(kind);
  std::vector<std::string> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {
      CHECK(fs::exists(p, ec), "data ", p, ": no such file or directory");
      out.push_back(p);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(p))
      if (e.is_regular_file() &&
          std::find(exts.begin(), exts.end(), e.path().extension().string()) != exts.end())
        found.push_back(e.path().string());
    CHECK(!found.empty(), "data ", p, ": the directory holds no ", kind, " files");
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

std::unique_ptr<DataSource> make_data_source(const DataConfig& c, uint64_t seed, int64_t model_vocab) {
  if (c.kind == "passkey") {
    std::unique_ptr<Tokenizer> tok = open_tokenizer(c.tokenizer);
    check_vocab(tok->vocab_size(), model_vocab, "the passkey tokenizer");
    return std::make_unique<CheckedRestore>(make_passkey_source(std::move(tok), c, seed));
  }
  CHECK(c.kind == "tokens" || c.kind == "jsonl", "data.kind must be tokens, jsonl or passkey, got '", c.kind,
        "'");
  CHECK(!c.paths.empty(), "data.path is required for data.kind ", c.kind);
  const std::vector<std::string> paths = expand_data_paths(c.paths, c.kind);
  std::unique_ptr<TokenStream> s;
  if (c.kind == "tokens") {
    s = std::make_unique<FileStream>(paths, c.eos_id, model_vocab);
  } else {
    std::unique_ptr<Tokenizer> tok = open_tokenizer(c.tokenizer);
    const int32_t eos = c.eos_id >= 0 ? c.eos_id : tok->eos_id();
    CHECK(eos >= 0, "data: the tokenizer has no eos token; set data.eos_id");
    check_vocab(std::max(tok->vocab_size(), int64_t(eos) + 1), model_vocab, "the jsonl tokenizer");
    s = std::make_unique<JsonlStream>(paths, std::move(tok), eos, c.chat_template);
  }
  return std::make_unique<CheckedRestore>(std::make_unique<StreamSource>(std::move(s), c.pack));
}

namespace {

// An integer field of data.*: a JSON integer (not 2.5, not 1e300) in [lo, hi].
int64_t config_int(const std::string& k, const json& v, int64_t lo, int64_t hi) {
  CHECK(v.is_number_integer(), "data.", k, ": expected an integer, got ", v.type_name(), " ", v.dump());
  const bool big = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX);
  CHECK(!big && v.get<int64_t>() >= lo && v.get<int64_t>() <= hi, "data.", k, " must be in [", lo, ", ", hi,
        "], got ", v.dump());
  return v.get<int64_t>();
}

double config_number(const std::string& k, const json& v) {
  CHECK(v.is_number(), "data.", k, ": expected a number, got ", v.type_name(), " ", v.dump());
  return v.get<double>();
}

}  // namespace

DataConfig data_config_from_json(const json& j) {
  DataConfig c;
  if (j.is_null()) return c;
  CHECK(j.is_object(), "data: expected a mapping, got ", j.type_name());
  for (const auto& [k, v] : j.items()) {
    try {
      if (k == "kind") {
        c.kind = v.get<std::string>();
      } else if (k == "path" || k == "paths") {
        if (v.is_string()) c.paths = {v.get<std::string>()};
        if (v.is_array()) c.paths = v.get<std::vector<std::string>>();
        CHECK(v.is_null() || v.is_string() || v.is_array(), "data.", k,
              ": expected a path or a list of paths");
      } else if (k == "tokenizer") {
        c.tokenizer = v.get<std::string>();
      } else if (k == "pack") {
        c.pack = v.get<bool>();
      } else if (k == "eos_id") {
        c.eos_id = int32_t(config_int(k, v, -1, INT32_MAX));
      } else if (k == "passkey_digits") {
        c.passkey_digits = config_int(k, v, 1, 18);
      } else if (k == "depth_min") {
        c.depth_min = config_number(k, v);
      } else if (k == "depth_max") {
        c.depth_max = config_number(k, v);
      } else if (k == "passkey_min_len") {
        c.passkey_min_len = config_int(k, v, 0, INT32_MAX);
      } else if (k == "passkey_position_span") {
        c.passkey_position_span = config_int(k, v, 0, INT32_MAX);
      } else if (k == "template") {
        c.chat_template = v.get<std::string>();
        check_chat_template(c.chat_template);
      } else if (k == "passkey_loss") {
        c.passkey_loss = v.get<std::string>();
        CHECK(c.passkey_loss == "answer" || c.passkey_loss == "all",
              "data.passkey_loss must be answer or all, got '", c.passkey_loss, "'");
      } else {
        FAIL("data.", k,
             ": unknown key (known: kind, path, tokenizer, pack, eos_id, passkey_digits, depth_min, ",
             "depth_max, passkey_loss, passkey_min_len, passkey_position_span, template)");
      }
    } catch (const json::exception& e) {
      FAIL("data.", k, ": wrong type, got ", v.type_name(), " (", e.what(), ")");
    }
  }
  return c;
}

}  // namespace longctx
