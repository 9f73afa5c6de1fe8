// The data layer: .bin shards (round trip, every header/size error), token
// streams (windows, wrap-around, packing by eos, vocabulary check), JSONL with
// the byte tokenizer, the passkey generator, and exact resume from state().
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "core/check.h"
#include "harness.h"
#include "io/npy.h"
#include "io/token_shards.h"
#include "io/tokenizer.h"
#include "ops/lm_head_loss.h"
#include "train/data.h"
#include "train/jsonl_doc.h"
#include "train/passkey.h"
#include "train/train_config.h"

namespace fs = std::filesystem;
using namespace longctx;
using longctx::test::expect_error;

namespace {

constexpr int32_t X = kIgnoreIndex;
using Ids = std::vector<int32_t>;

Ids row(const Ids& v, int64_t r, int64_t T) { return Ids(v.begin() + r * T, v.begin() + (r + 1) * T); }

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/longctx_data_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& name) const { return dir_ + "/" + name; }

  std::string npy(const std::string& name, const Ids& ids) {
    save_npy_i32(p(name), {int64_t(ids.size())}, ids.data());
    return p(name);
  }
  std::string text(const std::string& name, const std::string& body) {
    std::ofstream(p(name), std::ios::binary) << body;
    return p(name);
  }
  // A shard with a hand-made header: magic, version, count, then `tokens` bytes of data.
  std::string raw_shard(const std::string& name, int32_t magic, int32_t version, int32_t count,
                        size_t data_bytes, size_t header_bytes = 1024) {
    std::vector<int32_t> h(256, 0);
    h[0] = magic, h[1] = version, h[2] = count;
    std::ofstream out(p(name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(h.data()), std::streamsize(header_bytes));
    out << std::string(data_bytes, '\0');
    return p(name);
  }
  std::unique_ptr<DataSource> tokens(const std::vector<std::string>& paths, bool pack = false,
                                     int32_t eos = -1, int64_t vocab = 0) {
    DataConfig c;
    c.paths = paths, c.pack = pack, c.eos_id = eos;
    return make_data_source(c, 1, vocab);
  }

  std::string dir_;
};

// ---- .bin shards -------------------------------------------------------------

TEST_F(DataTest, ShardRoundTripBothVersions) {
  const Ids ids = {0, 1, 255, 256, 65535, 7, 42};
  for (int version : {1, 2}) {
    const std::string path = p("v" + std::to_string(version) + ".bin");
    write_token_shard(path, ids, version);
    EXPECT_EQ(fs::file_size(path), 1024u + ids.size() * (version == 1 ? 2 : 4));
    const TokenShard s(path);
    EXPECT_EQ(s.version(), version);
    EXPECT_EQ(s.size(), int64_t(ids.size()));
    EXPECT_EQ(read_token_shard(path), ids);
    Ids mid(3);
    s.read(2, 3, mid.data());
    EXPECT_EQ(mid, (Ids{255, 256, 65535}));
  }
  write_token_shard(p("big.bin"), {1 << 20, 2000000000}, 2);
  EXPECT_EQ(read_token_shard(p("big.bin")), (Ids{1 << 20, 2000000000}));
  write_token_shard(p("empty.bin"), {}, 1);
  EXPECT_EQ(TokenShard(p("empty.bin")).size(), 0);
}

TEST_F(DataTest, EmptyShardsReadNothing) {
  // found by fuzzing: a 0-token uint32 shard read into an empty vector passed its null data() to
  // memcpy (undefined even for 0 bytes; UBSan: "null pointer passed as argument 1")
  for (int32_t magic : {kShardMagic, kShardMagicLlama3}) {
    const std::string path = raw_shard("empty.bin", magic, magic == kShardMagic ? 2 : 7, 0, 0);
    EXPECT_TRUE(read_token_shard(path).empty());
    const TokenShard s(path);
    s.read(0, 0, nullptr);
    expect_error([&] { s.read(0, 1, nullptr); }, {"empty.bin", "outside its 0 tokens"});
  }
}

TEST_F(DataTest, ShardCountBeyondTheFileIsRefused) {
  // a header claiming 2^31 - 1 tokens in a file that holds 2: compared with the file size, nothing mapped or
  // read
  const std::string path = raw_shard("big.bin", kShardMagic, 1, INT32_MAX, 4);
  expect_error([&] { TokenShard s(path); }, {"big.bin", "count of 2147483647 uint16", "truncated"});
}

TEST_F(DataTest, ShardHeaderAndSizeErrors) {
  auto open = [](const std::string& path) { return [path] { TokenShard s(path); }; };
  expect_error(open(p("missing.bin")), {"missing.bin", "cannot open"});
  expect_error(open(raw_shard("short.bin", kShardMagic, 1, 0, 0, 100)), {"short.bin", "100 bytes", "header"});
  expect_error(open(raw_shard("magic.bin", 12345, 1, 4, 8)), {"magic.bin", "bad magic 12345"});
  expect_error(open(raw_shard("version.bin", kShardMagic, 3, 4, 8)),
               {"version.bin", "unsupported version 3"});
  expect_error(open(raw_shard("negative.bin", kShardMagic, 1, -5, 0)),
               {"negative.bin", "negative token count"});
  expect_error(open(raw_shard("trunc.bin", kShardMagic, 1, 10, 19)),
               {"trunc.bin", "1043 bytes", "count of 10 uint16", "1044", "truncated"});
  expect_error(open(raw_shard("trail.bin", kShardMagic, 2, 2, 9)),
               {"trail.bin", "count of 2 uint32", "1032", "trailing bytes"});
  expect_error([&] { write_token_shard(p("w.bin"), {1, 70000}, 1); }, {"w.bin", "70000", "offset 1"});
  expect_error([&] { write_token_shard(p("w.bin"), {-1}, 2); }, {"w.bin", "-1", "offset 0"});
  expect_error([&] { write_token_shard(p("w.bin"), {1}, 3); }, {"w.bin", "version 3"});
  // The same problems surface through the data source, naming the file.
  expect_error([&] { tokens({p("trunc.bin")}); }, {"trunc.bin", "truncated"});
}

// ---- token streams -------------------------------------------------------------

TEST_F(DataTest, StreamWindowsOverlapByOneAndWrap) {
  auto src = tokens({npy("s.npy", {10, 11, 12, 13, 14, 15, 16, 17, 18, 19})});
  Batch b;
  src->next(b, 2, 4);
  EXPECT_EQ(b.B, 2);
  EXPECT_EQ(b.T, 4);
  EXPECT_EQ(b.inputs, (Ids{10, 11, 12, 13, 14, 15, 16, 17}));
  EXPECT_EQ(b.labels, (Ids{11, 12, 13, 14, 15, 16, 17, 18}));
  EXPECT_EQ(b.positions, (Ids{0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_EQ(b.doc_ids, Ids(8, 0));
  EXPECT_EQ(b.label_count(), 8);
  EXPECT_EQ(src->state()["epoch"], 0);
  // The third window crosses the end: the label from the last token to the
  // first is not data, so it is ignored.
  src->next(b, 1, 4);
  EXPECT_EQ(b.inputs, (Ids{18, 19, 10, 11}));
  EXPECT_EQ(b.labels, (Ids{19, X, 11, 12}));
  EXPECT_EQ(b.positions, (Ids{0, 1, 2, 3}));
  EXPECT_EQ(b.label_count(), 3);
  EXPECT_EQ(src->state()["epoch"], 1);
  EXPECT_EQ(src->state()["offset"], 2);
  EXPECT_EQ(src->vocab_needed(), 20);
}

TEST_F(DataTest, TwoDimensionalNpyIsOneFlatStream) {
  const Ids ids = {1, 2, 3, 4, 5, 6};
  save_npy_i32(p("m.npy"), {2, 3}, ids.data());
  auto src = tokens({p("m.npy")});
  Batch b;
  src->next(b, 1, 5);
  EXPECT_EQ(b.inputs, (Ids{1, 2, 3, 4, 5}));
  EXPECT_EQ(b.labels, (Ids{2, 3, 4, 5, 6}));
}

TEST_F(DataTest, PackingByEosRestartsPositionsAndDocuments) {
  const std::string f = npy("p.npy", {1, 2, 99, 3, 4, 5, 99, 6, 7, 99});
  auto src = tokens({f}, true, 99);
  Batch b;
  src->next(b, 2, 5);
  // The eos belongs to the document it ends; its label (the next document's
  // first token) is ignored. Row 1 continues document 2 from position 0.
  EXPECT_EQ(row(b.inputs, 0, 5), (Ids{1, 2, 99, 3, 4}));
  EXPECT_EQ(row(b.labels, 0, 5), (Ids{2, 99, X, 4, 5}));
  EXPECT_EQ(row(b.positions, 0, 5), (Ids{0, 1, 2, 0, 1}));
  EXPECT_EQ(row(b.doc_ids, 0, 5), (Ids{0, 0, 0, 1, 1}));
  EXPECT_EQ(row(b.inputs, 1, 5), (Ids{5, 99, 6, 7, 99}));
  EXPECT_EQ(row(b.labels, 1, 5), (Ids{99, X, 7, 99, X}));
  EXPECT_EQ(row(b.positions, 1, 5), (Ids{0, 1, 0, 1, 2}));
  EXPECT_EQ(row(b.doc_ids, 1, 5), (Ids{0, 0, 1, 1, 1}));
  EXPECT_EQ(b.label_count(), 7);

  // Without packing the same stream is plain: labels cross eos, one document.
  auto plain = tokens({f}, false, 99);
  plain->next(b, 1, 5);
  EXPECT_EQ(b.labels, (Ids{2, 99, 3, 4, 5}));
  EXPECT_EQ(b.positions, (Ids{0, 1, 2, 3, 4}));
  EXPECT_EQ(b.doc_ids, Ids(5, 0));
}

TEST_F(DataTest, FileEndsAreDocumentBoundaries) {
  write_token_shard(p("a.bin"), {1, 2, 3}, 1);
  write_token_shard(p("b.bin"), {4, 5, 6}, 2);
  text("notes.txt", "ignored: not a data file");
  // A directory expands to its shards, sorted; the label across a.bin's end is ignored.
  auto src = tokens({dir_}, true, -1);
  Batch b;
  src->next(b, 1, 5);
  EXPECT_EQ(b.inputs, (Ids{1, 2, 3, 4, 5}));
  EXPECT_EQ(b.labels, (Ids{2, 3, X, 5, 6}));
  EXPECT_EQ(b.positions, (Ids{0, 1, 2, 0, 1}));
  EXPECT_EQ(b.doc_ids, (Ids{0, 0, 0, 1, 1}));
  EXPECT_EQ(expand_data_paths({dir_}, "tokens"), (std::vector<std::string>{p("a.bin"), p("b.bin")}));
}

TEST_F(DataTest, TokenBeyondVocabularyNamesFileAndOffset) {
  const std::string f = npy("v.npy", {1, 2, 3, 50, 4});
  expect_error([&] { tokens({f}, false, -1, 40); }, {"v.npy", "token id 50", "offset 3", "40"});
  write_token_shard(p("v.bin"), {5, 6, 7, 60000}, 1);
  expect_error([&] { tokens({p("v.bin")}, false, -1, 32000); }, {"v.bin", "60000", "offset 3", "32000"});
  EXPECT_EQ(tokens({f}, false, -1, 51)->vocab_needed(), 51);
  expect_error([&] { tokens({text("x.txt", "hi")}); }, {"x.txt", "unknown token file type"});
  expect_error([&] { tokens({p("nothing.npy")}); }, {"nothing.npy", "no such file"});
}

// ---- jsonl -----------------------------------------------------------------------

std::unique_ptr<DataSource> jsonl(const std::string& path, bool pack = true) {
  DataConfig c;
  c.kind = "jsonl", c.paths = {path}, c.pack = pack;
  return make_data_source(c, 1, 259);
}

TEST_F(DataTest, JsonlDocumentsWithByteTokenizer) {
  const int32_t E = 257;  // the byte tokenizer's eos, appended to every document
  auto src = jsonl(text("d.jsonl", "{\"text\": \"ab\", \"id\": 1}\n\n{\"text\": \"cde\"}\n"));
  EXPECT_EQ(src->vocab_needed(), 259);
  Batch b;
  src->next(b, 3, 4);
  EXPECT_EQ(row(b.inputs, 0, 4), (Ids{'a', 'b', E, 'c'}));
  EXPECT_EQ(row(b.labels, 0, 4), (Ids{'b', E, X, 'd'}));
  EXPECT_EQ(row(b.positions, 0, 4), (Ids{0, 1, 2, 0}));
  EXPECT_EQ(row(b.doc_ids, 0, 4), (Ids{0, 0, 0, 1}));
  // Row 1 continues the stream where row 0's last label left it, and reaches
  // the end of the file: the next document is the first one again (epoch 1).
  EXPECT_EQ(row(b.inputs, 1, 4), (Ids{'d', 'e', E, 'a'}));
  EXPECT_EQ(row(b.labels, 1, 4), (Ids{'e', E, X, 'b'}));
  EXPECT_EQ(row(b.positions, 1, 4), (Ids{0, 1, 2, 0}));
  EXPECT_EQ(row(b.doc_ids, 1, 4), (Ids{0, 0, 0, 1}));
  EXPECT_EQ(row(b.inputs, 2, 4), (Ids{'b', E, 'c', 'd'}));
  EXPECT_EQ(row(b.labels, 2, 4), (Ids{E, X, 'd', 'e'}));
  EXPECT_EQ(row(b.positions, 2, 4), (Ids{0, 1, 0, 1}));
  EXPECT_EQ(row(b.doc_ids, 2, 4), (Ids{0, 0, 1, 1}));
  EXPECT_EQ(src->state()["epoch"], 1);

  auto plain = jsonl(p("d.jsonl"), false);
  plain->next(b, 1, 4);
  EXPECT_EQ(b.labels, (Ids{'b', E, 'c', 'd'}));
  EXPECT_EQ(b.doc_ids, Ids(4, 0));
}

TEST_F(DataTest, JsonlErrorsNameFileAndLine) {
  expect_error([&] { jsonl(text("a.jsonl", "{bad json\n")); }, {"a.jsonl:1", "malformed JSON"});
  expect_error([&] { jsonl(text("b.jsonl", "\n[1, 2]\n")); }, {"b.jsonl:2", "string field \"text\""});
  // A bad line later in the file fails when the stream reaches it.
  auto src = jsonl(text("c.jsonl", "{\"text\": \"abc\"}\n{\"text\": \"d\"}\n{\"txt\": \"e\"}\n"));
  Batch b;
  expect_error([&] { src->next(b, 1, 8); }, {"c.jsonl:3", "string field \"text\""});
  expect_error([&] { jsonl(text("e.jsonl", "\n  \n")); }, {"no documents", "e.jsonl"});
  DataConfig c;
  c.kind = "jsonl", c.paths = {p("a.jsonl")};
  expect_error([&] { make_data_source(c, 1, 200); }, {"259", "200"});
}

TEST_F(DataTest, JsonlPromptCompletionTrainsOnTheCompletionOnly) {
  const int32_t E = 257;
  DataConfig c;
  c.kind = "jsonl", c.paths = {text("pc.jsonl", "{\"prompt\": \"ab\", \"completion\": \"cd\"}\n")};
  auto src = make_data_source(c, 1, 259);
  Batch b;
  src->next(b, 2, 5);
  // the prompt's tokens are inputs but never targets; the completion and its eos are
  EXPECT_EQ(row(b.inputs, 0, 5), (Ids{'a', 'b', 'c', 'd', E}));
  EXPECT_EQ(row(b.labels, 0, 5), (Ids{X, 'c', 'd', E, X}));
  EXPECT_EQ(row(b.labels, 1, 5), (Ids{X, 'c', 'd', E, X}));
  EXPECT_EQ(b.label_count(), 6);
  // resume inside a document keeps its mask
  src->next(b, 1, 2);
  const auto st = src->state();
  Batch want, got;
  src->next(want, 1, 6);
  auto again = make_data_source(c, 1, 259);
  again->restore(st);
  again->next(got, 1, 6);
  EXPECT_EQ(got.labels, want.labels);
  EXPECT_EQ(got.inputs, want.inputs);
}

TEST_F(DataTest, JsonlMessagesTrainOnTheAssistantRepliesWithTheirEndMarker) {
  DataConfig c;
  c.kind = "jsonl", c.chat_template = "plain";
  c.paths = {text("m.jsonl",
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, "
                  "{\"role\": \"assistant\", \"content\": \"yo\"}]}\n")};
  auto src = make_data_source(c, 1, 259);
  const std::string doc = "User: hi\n\nAssistant: yo\n\n";
  const int64_t T = int64_t(doc.size()) + 1;  // the eos too
  Batch b;
  src->next(b, 1, T);
  Ids want(size_t(T), X);
  const size_t y = doc.find("yo");
  want[y - 1] = 'y', want[y] = 'o';  // only the reply is predicted
  EXPECT_EQ(b.labels, want);

  // chatml: the reply's <|im_end|> counts too (with the byte tokenizer it is bytes)
  c.chat_template = "chatml";
  auto cm = make_data_source(c, 1, 259);
  const std::string d2 = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n";
  cm->next(b, 1, int64_t(d2.size()) + 1);
  EXPECT_EQ(b.label_count(), int64_t(std::string("yo<|im_end|>").size()));

  c.chat_template = "";
  expect_error([&] { make_data_source(c, 1, 259); }, {"m.jsonl:1", "data.template"});
  expect_error([&] { check_chat_template("alpaca"); }, {"alpaca", "chatml"});
  c.chat_template = "plain";
  c.paths = {text("bad.jsonl", "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n")};
  expect_error([&] { make_data_source(c, 1, 259); }, {"bad.jsonl:1", "robot"});
  c.paths = {text("pc2.jsonl", "{\"prompt\": \"ab\"}\n")};
  expect_error([&] { make_data_source(c, 1, 259); }, {"pc2.jsonl:1", "completion"});
}

// ---- passkey --------------------------------------------------------------------

std::unique_ptr<DataSource> passkey(uint64_t seed, double dmin = 0.0, double dmax = 1.0) {
  DataConfig c;
  c.kind = "passkey", c.depth_min = dmin, c.depth_max = dmax;
  return make_data_source(c, seed, 259);
}

TEST(Passkey, RowsEndWithTheAnswerAndOnlyItIsLabelled) {
  const int64_t T = 400, B = 3;
  auto src = passkey(7);
  const auto tok = make_byte_tokenizer();
  Batch b;
  src->next(b, B, T);
  ASSERT_EQ(b.inputs.size(), size_t(B * T));
  EXPECT_EQ(b.label_count(), B * 5);
  for (int64_t r = 0; r < B; r++) {
    const Ids in = row(b.inputs, r, T), lab = row(b.labels, r, T);
    EXPECT_EQ(in[0], tok->bos_id());
    // The labelled positions are the last five: the key's digits, which the
    // needle stated earlier in the row.
    std::string key;
    for (int64_t t = 0; t < T; t++) {
      if (t < T - 5) {
        EXPECT_EQ(lab[t], X) << "row " << r << " t " << t;
      } else {
        key += char(lab[t]);
      }
    }
    ASSERT_EQ(key.size(), 5u);
    for (char ch : key) EXPECT_TRUE(ch >= '0' && ch <= '9') << key;
    const std::string s = tok->decode(Ids(in.begin() + 1, in.end()));
    EXPECT_NE(s.find("The pass key is " + key + ". Remember it. " + key + " is the pass key."),
              std::string::npos);
    // inputs stop one token short: the last digit is only a label
    EXPECT_TRUE(s.ends_with("What is the pass key? The pass key is " + key.substr(0, 4)))
        << s.substr(s.size() - 60);
    EXPECT_EQ(row(b.positions, r, T)[T - 1], T - 1);
  }
}

TEST(Passkey, SameSeedSameBatchAndSamplesDependOnIndexOnly) {
  Batch a, b, c;
  passkey(11)->next(a, 2, 300);
  passkey(11)->next(b, 2, 300);
  passkey(12)->next(c, 2, 300);
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.inputs, c.inputs);
  // Sample 1 is the same whether drawn as row 1 of one batch or row 0 of the next.
  auto src = passkey(11);
  src->next(c, 1, 300);
  src->next(c, 1, 300);
  EXPECT_EQ(c.inputs, row(a.inputs, 1, 300));
}

TEST(Passkey, NeedleSitsAtTheChosenDepth) {
  const auto tok = make_byte_tokenizer();
  const int64_t total = 2000;
  for (double depth : {0.0, 0.25, 0.5, 0.9, 1.0}) {
    const PasskeySample s = make_passkey_sample(*tok, total, depth, 99, 6);
    ASSERT_EQ(int64_t(s.tokens.size()), total);
    ASSERT_EQ(s.key.size(), 6u);
    EXPECT_EQ(s.answer_len, 6);
    EXPECT_EQ(s.answer_start + s.answer_len, total);
    EXPECT_EQ(tok->decode(Ids(s.tokens.begin() + s.answer_start, s.tokens.end())), s.key);
    const std::string needle = " The pass key is " + s.key + ". Remember it. " + s.key + " is the pass key.";
    const auto at = s.tokens.begin() + s.needle_start;
    EXPECT_EQ(tok->decode(Ids(at, at + int64_t(needle.size()))), needle);
    // Filler = everything but bos, needle, question, answer; the needle snaps
    // to the nearest token.
    const int64_t question = int64_t(std::string(" What is the pass key? The pass key is ").size());
    const int64_t filler = total - 1 - int64_t(needle.size()) - question - 6;
    EXPECT_NEAR(double(s.needle_start - 1), depth * double(filler), 1.0) << "depth " << depth;
  }
  // The source's depth range: [0.5, 0.5] puts every needle mid-filler.
  Batch b;
  passkey(3, 0.5, 0.5)->next(b, 4, 1000);
  const double filler = 1001 - 1 - 59 - 39 - 5;  // 5-digit key: a 59-token needle
  for (int64_t r = 0; r < 4; r++) {
    const Ids in = row(b.inputs, r, 1000);
    const std::string s = tok->decode(Ids(in.begin() + 1, in.end()));  // without bos
    EXPECT_NEAR(double(s.find(" The pass key is ")), 0.5 * filler, 15.0) << "row " << r;
  }
  expect_error([&] { make_passkey_sample(*tok, 50, 0.5, 1, 5); },
               {"passkey", "50 tokens", "longer sequence"});
}

// ---- resume ------------------------------------------------------------------------

class ResumeTest : public DataTest {
 protected:
  // 3 batches, save, 2 more == a fresh source restored from the saved state
  // (through a JSON round trip, as a checkpoint stores it), 2 batches.
  void expect_exact_resume(const std::function<std::unique_ptr<DataSource>()>& make, int64_t B, int64_t T) {
    auto a = make();
    Batch b;
    for (int i = 0; i < 3; i++) a->next(b, B, T + i);  // T changes, as under a curriculum
    const std::string saved = a->state().dump();
    auto fresh = make();
    fresh->next(b, B, T);  // its own position must not matter after restore
    fresh->restore(nlohmann::json::parse(saved));
    for (int i = 0; i < 2; i++) {
      Batch x, y;
      a->next(x, B, T);
      fresh->next(y, B, T);
      EXPECT_EQ(x.inputs, y.inputs) << "batch " << i;
      EXPECT_EQ(x.labels, y.labels) << "batch " << i;
      EXPECT_EQ(x.positions, y.positions) << "batch " << i;
      EXPECT_EQ(x.doc_ids, y.doc_ids) << "batch " << i;
    }
    EXPECT_EQ(a->state(), fresh->state());
  }
};

TEST_F(ResumeTest, TokenStream) {
  Ids ids;
  for (int i = 0; i < 101; i++) ids.push_back(i % 7 == 6 ? 99 : i % 50);
  write_token_shard(p("a.bin"), Ids(ids.begin(), ids.begin() + 40), 1);
  npy("b.npy", Ids(ids.begin() + 40, ids.end()));
  expect_exact_resume([&] { return tokens({p("a.bin"), p("b.npy")}, true, 99); }, 2, 9);
}

TEST_F(ResumeTest, Jsonl) {
  std::string body;
  for (int i = 0; i < 9; i++)
    body += "{\"text\": \"" + std::string(size_t(3 + 5 * i), char('a' + i)) + "\"}\n";
  text("a.jsonl", body);
  text("b.jsonl", "{\"text\": \"second file\"}\n");
  expect_exact_resume([&] { return jsonl(dir_); }, 2, 11);
}

TEST_F(ResumeTest, Passkey) {
  expect_exact_resume([] { return passkey(5); }, 2, 200);
}

TEST_F(ResumeTest, MismatchedStateIsAnError) {
  auto src = tokens({npy("a.npy", {1, 2, 3, 4})});
  expect_error(
      [&] {
        src->restore({{"kind", "passkey"}, {"sample", 0}, {"seed", 0}});
      },
      {"passkey", "tokens"});
  expect_error(
      [&] {
        src->restore({{"kind", "tokens"}, {"offset", 0}, {"epoch", 0}, {"tokens", 5}});
      },
      {"5 tokens", "changed"});
}

// ---- config ------------------------------------------------------------------------

TEST(DataConfigJson, ReadsKeysAndRejectsUnknownOnes) {
  const DataConfig c = data_config_from_json(
      {{"kind", "jsonl"}, {"path", "x.jsonl"}, {"pack", false}, {"eos_id", 3}, {"depth_max", 0.5}});
  EXPECT_EQ(c.kind, "jsonl");
  EXPECT_EQ(c.paths, std::vector<std::string>{"x.jsonl"});
  EXPECT_FALSE(c.pack);
  EXPECT_EQ(c.eos_id, 3);
  EXPECT_EQ(c.depth_max, 0.5);
  EXPECT_EQ(data_config_from_json({{"path", {"a", "b"}}}).paths, (std::vector<std::string>{"a", "b"}));
  expect_error([] { data_config_from_json({{"pth", "x"}}); }, {"data.pth", "unknown key"});
  expect_error([] { data_config_from_json({{"pack", "yes"}}); }, {"data.pack", "wrong type"});
  DataConfig bad;
  bad.kind = "text";
  expect_error([&] { make_data_source(bad, 0, 0); }, {"data.kind", "text"});
  EXPECT_EQ(data_config_from_json({{"passkey_loss", "all"}}).passkey_loss, "all");
  expect_error([] { data_config_from_json({{"passkey_loss", "most"}}); }, {"passkey_loss", "most"});
}

TEST(PasskeyLoss, AllLabelsEveryTokenAnswerOnlyTheKey) {
  for (const char* mode : {"answer", "all"}) {
    DataConfig c;
    c.kind = "passkey";
    c.passkey_loss = mode;
    auto src = make_data_source(c, 3, 259);
    Batch b;
    src->next(b, 2, 150);
    EXPECT_EQ(b.label_count(), std::string(mode) == "all" ? 300 : 2 * 5) << mode;
  }
}

TEST(PasskeySpan, PositionsJumpOnceInTheFillerBetweenNeedleAndQuestion) {
  DataConfig c;
  c.kind = "passkey", c.passkey_position_span = 4096;
  auto span = make_data_source(c, 5, 259);
  auto plain = passkey(5);
  const auto tok = make_byte_tokenizer();
  const int64_t T = 200, B = 8;
  Batch a, b;
  span->next(a, B, T);
  plain->next(b, B, T);
  EXPECT_EQ(a.inputs, b.inputs);  // the same samples; only their positions differ
  EXPECT_EQ(a.labels, b.labels);
  int64_t skipped = 0;
  for (int64_t r = 0; r < B; r++) {
    const Ids in = row(a.inputs, r, T), pos = row(a.positions, r, T);
    const std::string s = tok->decode(Ids(in.begin() + 1, in.end()));
    const int64_t needle_end =
        1 + int64_t(s.find(". Remember it. ")) + 15 + 5 + 17;  // "NNNNN is the pass key."
    const int64_t question = 1 + int64_t(s.rfind(" What is the pass key?"));
    int64_t jumps = 0;
    for (int64_t t = 1; t < T; t++) {
      const int64_t d = pos[t] - pos[t - 1];
      ASSERT_GE(d, 1) << "row " << r << " t " << t;
      if (d == 1) continue;
      jumps++;
      EXPECT_GE(t, needle_end) << "row " << r;  // the needle and the question stay contiguous
      EXPECT_LE(t, question) << "row " << r;
    }
    EXPECT_LE(jumps, 1) << "row " << r;
    EXPECT_LT(pos[T - 1], 4096) << "row " << r;
    skipped += pos[T - 1] - (T - 1);
  }
  EXPECT_GT(skipped, B * 500);  // skips uniform in [0, 4096 - T): far more than a few tokens on average
  expect_error([] { data_config_from_json({{"passkey_position_span", -1}}); }, {"passkey_position_span"});
}

// ---- found by fuzzing (tests/fuzz): each input once escaped as something other
// than a one-line longctx::Error, or was attempted instead of refused

TEST_F(DataTest, JsonlNumberOverflowIsAMalformedLine) {
  // nlohmann throws out_of_range (not parse_error) for 1e999: it used to escape raw
  expect_error([&] { jsonl(text("o.jsonl", "{\"text\":1e999}\n")); },
               {"o.jsonl:1", "malformed JSON", "1e999"});
  auto src = jsonl(text("o2.jsonl", "{\"text\": \"ab\"}\n{\"text\": \"x\", \"n\": -1e999}\n"));
  Batch b;
  expect_error([&] { src->next(b, 1, 8); }, {"o2.jsonl:2", "malformed JSON"});
}

TEST_F(DataTest, AbsurdBatchShapeIsRefusedNotAllocated) {
  auto src = tokens({npy("a.npy", {1, 2, 3, 4})});
  Batch b;
  expect_error([&] { src->next(b, int64_t(1) << 30, int64_t(1) << 30); }, {"batch shape", "absurd"});
  expect_error([&] { src->next(b, int64_t(1) << 62, int64_t(1) << 62); }, {"batch shape", "absurd"});
}

TEST_F(ResumeTest, MalformedSavedStateIsAOneLineError) {
  // what a hand-edited or corrupt state.json holds under "data"
  auto tok = tokens({npy("a.npy", {1, 2, 3, 4})});
  expect_error(
      [&] {
        tok->restore({{"kind", "tokens"}, {"offset", "3"}, {"epoch", 0}, {"tokens", 4}});
      },
      {"saved data state", "'offset'"});
  expect_error(
      [&] {
        tok->restore({{"kind", "tokens"}, {"offset", -1}, {"epoch", 0}, {"tokens", 4}});
      },
      {"saved data state", "'offset'", "-1"});
  expect_error([&] { tok->restore({{"kind", "tokens"}, {"offset", 1}, {"tokens", 4}}); }, {"'epoch'"});
  expect_error([&] { tok->restore(nlohmann::json::array({1, 2})); }, {"cannot restore", "tokens"});
  expect_error([&] { tok->restore({{"kind", 7}}); }, {"cannot restore", "tokens"});

  text("d.jsonl", "{\"text\": \"abc\"}\n{\"text\": \"de\"}\n");
  auto js = jsonl(p("d.jsonl"));
  nlohmann::json st = js->state();
  st["line"] = std::numeric_limits<int64_t>::min();  // line - 1 used to overflow
  expect_error([&] { js->restore(st); }, {"saved data state", "'line'"});
  st = js->state();
  st["token"] = -1;  // read as size_t, it used to become 2^64 - 1
  expect_error([&] { js->restore(st); }, {"saved data state", "'token'"});
  st = js->state();
  st["offset"] = 9.5;
  expect_error([&] { js->restore(st); }, {"saved data state", "'offset'"});

  auto pk = passkey(3);  // the passkey source reads its state with at(): now a one-line error too
  expect_error([&] { pk->restore({{"kind", "passkey"}, {"seed", 1}}); }, {"saved data state is malformed"});
  expect_error(
      [&] {
        pk->restore({{"kind", "passkey"}, {"sample", "x"}, {"seed", 1}});
      },
      {"saved data state is malformed"});
  expect_error([&] { pk->restore(nlohmann::json("passkey")); }, {"saved data state is malformed"});
}

TEST(DataConfigJson, IntegersAreCheckedNotTruncated) {
  // get<int32_t>() used to wrap 2^32 + 1 to 1, and get<int64_t>() to truncate 5.5 to 5 (and 1e300: UB)
  expect_error(
      [] {
        data_config_from_json({{"eos_id", 4294967297LL}});
      },
      {"data.eos_id", "[-1, 2147483647]", "4294967297"});
  expect_error([] { data_config_from_json({{"passkey_digits", 5.5}}); }, {"data.passkey_digits", "integer"});
  expect_error(
      [] {
        data_config_from_json({{"passkey_digits", 1e300}});
      },
      {"data.passkey_digits", "integer"});
  expect_error([] { data_config_from_json({{"passkey_digits", 40}}); }, {"data.passkey_digits", "[1, 18]"});
  expect_error(
      [] {
        data_config_from_json({{"passkey_min_len", int64_t(1) << 40}});
      },
      {"data.passkey_min_len"});
  expect_error([] { data_config_from_json({{"depth_min", "low"}}); }, {"data.depth_min", "number"});
  EXPECT_EQ(data_config_from_json({{"eos_id", -1}, {"passkey_digits", 7}}).passkey_digits, 7);
}

}  // namespace
