// Tokenizers: the byte tokenizer, small hand-written tokenizer.json files with
// ids worked out by hand (merge ranks, ignore_merges, added tokens, both
// pre-tokenizer styles; SentencePiece-style files in both layouts, with ids
// that HF `tokenizers` gives for the same files), NFC against cases generated
// from Python's unicodedata (nfc_cases.inc) and NormalizationTest-style ones,
// and one test per rejected kind of file. Agreement with HF `tokenizers` on
// real trained files is tests/io/test_tokenizer_hf.py and test_tokenizer_sp.py.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "harness.h"
#include "io/tokenizer.h"
#include "io/unicode_nfc.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace longctx;
using Ids = std::vector<int32_t>;

namespace {

const char* kLlama3Pattern = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
                             R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-2's byte alphabet, written out independently of the library: printable
// Latin-1 bytes stand for themselves, the rest take U+0100.. in byte order.
std::string byte_char(int b) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int extra = 256;
    for (int c = 0; c < 256; c++) {
      const bool printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
      const int cp = printable ? c : extra++;
      t[size_t(c)] = cp < 0x80 ? std::string(1, char(cp))
                               : std::string{char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
    }
    return t;
  }();
  return table[size_t(b)];
}
std::string mapped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += byte_char(c);
  return out;
}

// A tokenizer.json whose vocab is the 256 byte characters (id = byte value)
// followed by one token per merge, in merge order; merges are given as raw
// text pairs (" w" is space + w).
json bpe_json(const std::vector<std::pair<std::string, std::string>>& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; b++) vocab[byte_char(b)] = b;
  json m = json::array();
  for (auto& [a, b] : merges) {
    if (!vocab.contains(mapped(a + b))) vocab[mapped(a + b)] = vocab.size();
    m.push_back(json::array({mapped(a), mapped(b)}));
  }
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder",
           {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", m}}}};
}

// ids 256.. in this order
const std::vector<std::pair<std::string, std::string>> kHelloMerges = {
    {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}, {" w", "or"}};

void add_token(json& j, const std::string& content, int id, bool special) {
  j["added_tokens"].push_back({{"id", id},
                               {"content", content},
                               {"single_word", false},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"normalized", !special},
                               {"special", special}});
}

json llama3_pre() {
  return {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", kLlama3Pattern}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/longctx_tok_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::unique_ptr<Tokenizer> load(const json& j, const std::string& name = "tokenizer.json") {
    return load_tokenizer(write(name, j.dump()));
  }
  // Loading `j` must throw one line naming the file and every needle.
  void expect_rejected(const json& j, const std::vector<std::string>& needles) {
    expect_error([&] { load_tokenizer(write("bad.json", j.dump())); }, needles, dir_ + "/bad.json");
  }
  void expect_error(const std::function<void()>& f, std::vector<std::string> needles,
                    const std::string& path) {
    if (!path.empty()) needles.push_back(path);
    longctx::test::expect_error(f, needles);
  }

  std::string dir_;
};

TEST(ByteTokenizer, RoundTripAndSpecials) {
  const auto tok = make_byte_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_EQ(tok->eos_id(), 257);
  EXPECT_EQ(tok->token_id("<|pad|>"), 258);
  EXPECT_EQ(tok->token_id("A"), 65);
  EXPECT_EQ(tok->token_id("<|nope|>"), -1);
  std::string all;
  for (int b = 0; b < 256; b++) all += char(b);
  const Ids ids = tok->encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; b++) EXPECT_EQ(ids[size_t(b)], b);
  EXPECT_EQ(tok->decode(ids), all);
  EXPECT_EQ(tok->encode("<|bos|>hi<|eos|><|pad|><|bos"),
            Ids({256, 'h', 'i', 257, 258, '<', '|', 'b', 'o', 's'}));
  EXPECT_EQ(tok->decode({256, 'h', 257}), "<|bos|>h<|eos|>");
  EXPECT_THROW(tok->decode({259}), Error);
  EXPECT_TRUE(tok->encode("").empty());
}

TEST_F(TokenizerTest, MergesApplyByRankThenLeftmost) {
  const auto tok = load(bpe_json(kHelloMerges));
  EXPECT_EQ(tok->vocab_size(), 263);
  // "hello" | " world": Ġw (rank 4) before or (rank 5), then Ġwor; l, d stay bytes.
  EXPECT_EQ(tok->encode("hello world"), Ids({259, 262, 'l', 'd'}));
  EXPECT_EQ(tok->encode("lll"), Ids({257, 'l'}));  // equal ranks: leftmost first
  EXPECT_EQ(tok->encode("hell"), Ids({258}));      // he + ll, then hell
  EXPECT_EQ(tok->encode("hello, world!"), Ids({259, ',', 262, 'l', 'd', '!'}));
  EXPECT_EQ(tok->decode(tok->encode("hello world")), "hello world");
  EXPECT_EQ(tok->token_id(mapped(" wor")), 262);
  EXPECT_EQ(tok->token_id(" wor"), -1) << "vocab strings are in the byte alphabet";
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_id(), -1);
  EXPECT_TRUE(tok->encode("").empty());
}

TEST_F(TokenizerTest, StringMergesReadLikeListMerges) {
  json j = bpe_json(kHelloMerges);
  for (json& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  EXPECT_EQ(load(j)->encode("hello world"), Ids({259, 262, 'l', 'd'}));
}

TEST_F(TokenizerTest, IgnoreMergesTakesWholePreTokensFromTheVocab) {
  json j = bpe_json(kHelloMerges);
  j["model"]["vocab"][mapped(" world")] = 263;  // no merge path reaches it
  EXPECT_EQ(load(j)->encode("hello world"), Ids({259, 262, 'l', 'd'}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(load(j)->encode("hello world"), Ids({259, 263}));
  EXPECT_EQ(load(j)->encode("hello worlds"), Ids({259, 262, 'l', 'd', 's'}))
      << "only a whole pre-token counts";
}

TEST_F(TokenizerTest, AddedTokensMatchLeftmostLongestBeforeSplitting) {
  json j = bpe_json(kHelloMerges);
  add_token(j, "<|eot|>", 263, true);
  add_token(j, "<|eot|>!", 264, true);
  add_token(j, "[X]", 265, false);
  const auto tok = load(j);
  EXPECT_EQ(tok->vocab_size(), 266);
  EXPECT_EQ(tok->encode("hello<|eot|> world[X]"), Ids({259, 263, 262, 'l', 'd', 265}));
  EXPECT_EQ(tok->encode("<|eot|>!<|eot|><|eot"), Ids({264, 263, '<', '|', 'e', 'o', 't'}));
  EXPECT_EQ(tok->token_id("<|eot|>"), 263);
  EXPECT_EQ(tok->token_id("[X]"), 265);
  EXPECT_EQ(tok->decode({259, 263, 265}), "hello<|eot|>[X]");
}

TEST_F(TokenizerTest, PrefixSpaceIsAddedToEachTextSegment) {
  json j = bpe_json(kHelloMerges);
  j["pre_tokenizer"]["add_prefix_space"] = true;
  add_token(j, "<|eot|>", 263, true);
  const auto tok = load(j);
  EXPECT_EQ(tok->encode("hello<|eot|>hello"), Ids({' ', 259, 263, ' ', 259}));
  EXPECT_EQ(tok->encode(" world"), Ids({262, 'l', 'd'}));
}

TEST_F(TokenizerTest, Llama3SplitVersusGpt2Regex) {
  const std::vector<std::pair<std::string, std::string>> merges = {{"'", "M"}, {"3", "4"}, {" ", "1"}};
  json j = bpe_json(merges);
  // GPT-2: "'M" is not a contraction (lower case only); " 12345" is one piece.
  EXPECT_EQ(load(j)->encode("I'M 12345"), Ids({'I', '\'', 'M', 258, '2', 257, '5'}));
  j["pre_tokenizer"] = llama3_pre();
  // Llama 3: case-insensitive "'M"; the space stands alone; digits in threes.
  EXPECT_EQ(load(j)->encode("I'M 12345"), Ids({'I', 256, ' ', '1', '2', '3', '4', '5'}));
}

TEST_F(TokenizerTest, MultilingualRoundTripAndLongRuns) {
  json j = bpe_json(kHelloMerges);
  j["pre_tokenizer"] = llama3_pre();
  const auto tok = load(j);
  const std::string text = "Grüße, мир! καλημέρα 世界 🚀\t\n\n  x" + std::string(100000, ' ') +
                           std::string(50000, '7') + std::string(30000, '\n') + "end";
  const Ids ids = tok->encode(text);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_THROW(tok->decode({100000}), Error);
}

TEST_F(TokenizerTest, ConcurrentEncodesAgree) {
  const auto tok = load(bpe_json(kHelloMerges));
  std::string text;
  for (int i = 0; i < 2000; i++) text += "hello world " + std::to_string(i) + (i % 7 ? " " : "\n");
  const Ids want = tok->encode(text);
  std::vector<Ids> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) threads.emplace_back([&] { g = tok->encode(text); });
  for (auto& t : threads) t.join();
  for (const Ids& g : got) EXPECT_EQ(g, want);
}

TEST_F(TokenizerTest, BosEosFromConfigOrWellKnownNames) {
  json j = bpe_json(kHelloMerges);
  add_token(j, "<|begin_of_text|>", 263, true);
  add_token(j, "<|end_of_text|>", 264, true);
  add_token(j, "<|eot_id|>", 265, true);
  auto tok = load(j);
  EXPECT_EQ(tok->bos_id(), 263);
  EXPECT_EQ(tok->eos_id(), 264);
  write("tokenizer_config.json",
        R"({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"}})");
  tok = load(j);
  EXPECT_EQ(tok->bos_id(), 263);
  EXPECT_EQ(tok->eos_id(), 265);
}

TEST_F(TokenizerTest, InvalidUtf8TextIsAnError) {
  const auto tok = load(bpe_json(kHelloMerges));
  expect_error([&] { tok->encode("ok \xff\xfe"); }, {"not valid UTF-8"}, "");
}

TEST_F(TokenizerTest, UnsupportedModels) {
  json j = bpe_json(kHelloMerges);
  j["model"]["type"] = "Unigram";
  expect_rejected(j, {"model type 'Unigram' is not supported (only BPE)"});
  j["model"]["type"] = "WordPiece";
  expect_rejected(j, {"model type 'WordPiece'"});
  j = bpe_json(kHelloMerges);
  j["model"]["byte_fallback"] = true;
  expect_rejected(j, {"byte_fallback with a ByteLevel pre_tokenizer"});
  j = bpe_json(kHelloMerges);
  j["model"]["dropout"] = 0.1;
  expect_rejected(j, {"dropout"});
  j = bpe_json(kHelloMerges);
  j["model"]["continuing_subword_prefix"] = "##";
  expect_rejected(j, {"continuing_subword_prefix"});
}

TEST_F(TokenizerTest, UnsupportedPipelineParts) {
  json j = bpe_json(kHelloMerges);
  j["normalizer"] = {{"type", "NFKC"}};
  expect_rejected(j, {"normalizer 'NFKC' is not supported"});
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
  expect_rejected(j, {"normalizer 'Lowercase' is not supported"});
  j["normalizer"] = {{"type", "Prepend"}, {"prepend", "▁"}};
  expect_rejected(j, {"normalizer Prepend/Replace with a ByteLevel pre_tokenizer"});
  j = bpe_json(kHelloMerges);
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  expect_rejected(j, {"decoder 'ByteLevel' is not supported with this pre_tokenizer"});
  j["pre_tokenizer"] = nullptr;
  expect_rejected(j, {"decoder 'ByteLevel' is not supported with this pre_tokenizer"});
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  expect_rejected(j, {"pre_tokenizer type 'Whitespace' is not supported"});
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "Metaspace"}}, {{"type", "ByteLevel"}}}}};
  expect_rejected(j, {"Metaspace pre_tokenizer together with other"});
  j["pre_tokenizer"] = llama3_pre();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  expect_rejected(j, {"Split behavior 'Removed'"});
  j["pre_tokenizer"] = llama3_pre();
  j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true;
  expect_rejected(j, {"invert"});
  j["pre_tokenizer"] = llama3_pre();
  std::swap(j["pre_tokenizer"]["pretokenizers"][0], j["pre_tokenizer"]["pretokenizers"][1]);
  expect_rejected(j, {"ByteLevel step"});
  j["pre_tokenizer"] = llama3_pre();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}};
  expect_rejected(j, {"split pattern does not compile"});
  j = bpe_json(kHelloMerges);
  j["decoder"] = {{"type", "Metaspace"}};
  expect_rejected(j, {"decoder 'Metaspace' is not supported with a ByteLevel pre_tokenizer"});
}

TEST_F(TokenizerTest, BrokenFiles) {
  json j = bpe_json(kHelloMerges);
  j["model"]["merges"].push_back({"q", "zz"});
  expect_rejected(j, {"merge 7 uses 'zz', which is not in the vocab"});
  j = bpe_json(kHelloMerges);
  j["model"]["merges"].push_back({"q", "q"});  // "qq" itself is missing
  expect_rejected(j, {"'qq', which is not in the vocab"});
  j = bpe_json(kHelloMerges);
  j["model"]["merges"].push_back("a b c");
  expect_rejected(j, {"merge 7 'a b c'"});
  j = bpe_json(kHelloMerges);
  j["model"]["vocab"] = json::array();
  expect_rejected(j, {"no 'vocab' object"});
  j = bpe_json(kHelloMerges);
  j["model"]["vocab"]["h"] = "zero";
  expect_rejected(j, {"vocab id of 'h'", "must be an integer"});
  j = bpe_json(kHelloMerges);
  add_token(j, "<|x|>", 300, true);  // HF would renumber it 263
  expect_rejected(j, {"'<|x|>' has id 300", "263"});
  j = bpe_json(kHelloMerges);
  add_token(j, "<mask>", 263, true);
  j["added_tokens"][0]["lstrip"] = true;
  expect_rejected(j, {"'<mask>' uses lstrip"});
  expect_error([&] { load_tokenizer(write("broken.json", "{\"model\": {")); }, {"malformed JSON"},
               dir_ + "/broken.json");
  expect_error([&] { load_tokenizer(dir_ + "/missing.json"); }, {"cannot open"}, dir_ + "/missing.json");
}

// ---- NFC ------------------------------------------------------------------

std::string from_hex(const std::string& hex) {
  std::string out;
  std::istringstream in(hex);
  for (std::string h; in >> h;) unicode::append_utf8(out, uint32_t(std::stoul(h, nullptr, 16)));
  return out;
}

const char* const kNfcCases =
#include "io/nfc_cases.inc"
    ;

TEST(Nfc, CasesFromPythonUnicodedata) {
  std::istringstream in(kNfcCases);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    const size_t semi = line.find(';');
    ASSERT_TRUE(line.size() > 2 && (line[0] == 'U' || line[0] == 'T') && semi != std::string::npos) << line;
    const auto data = line[0] == 'U' ? unicode::NfcData::kUnicode : unicode::NfcData::kTokenizers;
    const std::string text = from_hex(line.substr(2, semi - 2)), want = from_hex(line.substr(semi + 1));
    EXPECT_EQ(unicode::nfc(text, data), want) << line;
    EXPECT_EQ(unicode::nfc(want, data), want) << "not idempotent: " << line;
    n++;
  }
  EXPECT_GT(n, 1000u);
  EXPECT_STREQ(unicode::unicode_version(), "14.0.0");
}

// In the manner of Unicode's NormalizationTest.txt: source -> NFC.
TEST(Nfc, NormalizationTestStyle) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"A\u030A", "\u00C5"},                         // composition
      {"\u212B", "\u00C5"},                          // singleton decomposition (ANGSTROM SIGN)
      {"\u2126", "\u03A9"},                          // OHM SIGN
      {"\uF900", "\u8C48"},                          // CJK compatibility ideograph
      {"\uFB01", "\uFB01"},                          // compatibility only: NFC keeps it
      {"\u1E0B\u0323", "\u1E0D\u0307"},              // reordered, then the dot below composes first
      {"q\u0307\u0323", "q\u0323\u0307"},            // reordered, nothing to compose
      {"a\u0302\u0323", "\u1EAD"},                   // two compositions after reordering
      {"a\u0301\u0302", "\u00E1\u0302"},             // blocked by a mark of the same class
      {"a\u0300\u0301", "\u00E0\u0301"},             // same class: order kept
      {"a\u05B0\u0301", "\u00E1\u05B0"},             // not blocked by a lower class
      {"e\u0301\u0327", "\u0229\u0301"},             // cedilla (202) before acute (230)
      {"\u00C5\u0301", "\u01FA"},                    // a precomposed letter composes further
      {"\u03B1\u0313\u0301\u0345", "\u1F84"},        // Greek, three marks
      {"\u1E9B\u0323", "\u1E9B\u0323"},              // long s with dot: the composite is excluded
      {"\u0958", "\u0915\u093C"},                    // composition exclusion
      {"\u0344", "\u0308\u0301"},                    // non-starter decomposition
      {"\u0F73", "\u0F71\u0F72"},                    // non-starter decomposition
      {"\u0B47\u0B3E", "\u0B4B"},                    // two starters compose
      {"\u0B47\u0300\u0B3E", "\u0B47\u0300\u0B3E"},  // ... unless a mark stands between
      {"\u0CC6\u0CC2\u0CD5", "\u0CCB"},              // starter + starter + starter
      {"\u1100\u1161\u11A8", "\uAC01"},              // Hangul L V T
      {"\uAC00\u11A8", "\uAC01"},                    // LV + T
      {"\uAC01\u11A8", "\uAC01\u11A8"},              // LVT + T: no
      {"\u1100\u1161\u11A7", "\uAC00\u11A7"},        // U+11A7 is not a T jamo
      {"\U0001D15E", "\U0001D157\U0001D165"},        // excluded, above the BMP
      {"\U00011099\U000110BA", "\U0001109A"},        // composition above the BMP
      {"", ""},
      {"plain ASCII \t\n", "plain ASCII \t\n"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(unicode::nfc(in), want) << in;
}

TEST(Nfc, TokenizersDataIsUnicode9) {
  // U+11938 (Unicode 13) = U+11935 U+11930 and U+1DFA (Unicode 14, class 218) are unknown to tokenizers.
  EXPECT_EQ(unicode::nfc("\U00011935\U00011930"), "\U00011938");
  EXPECT_EQ(unicode::nfc("\U00011935\U00011930", unicode::NfcData::kTokenizers), "\U00011935\U00011930");
  EXPECT_EQ(unicode::nfc("a\u1DFA\u0301"), "\u00E1\u1DFA");
  EXPECT_EQ(unicode::nfc("a\u1DFA\u0301", unicode::NfcData::kTokenizers), "a\u1DFA\u0301")
      << "a starter there";
}

TEST(Nfc, LongRunsAndInvalidUtf8) {
  std::string marks = "e";
  for (int i = 0; i < 200000; i++) marks += i % 2 ? "\u0301" : "\u0323";
  const std::string out = unicode::nfc(marks);
  // e + dot below composes; the other dots below (220) come before all the acutes (230);
  // a quadratic sort would take minutes here
  std::string want = "\u1EB9";
  for (int i = 0; i < 99999; i++) want += "\u0323";
  for (int i = 0; i < 100000; i++) want += "\u0301";
  EXPECT_EQ(out, want);
  for (const char* bad : {"\xC0\xAF", "\xED\xA0\x80", "ok \xE4\xBD", "\xF4\x90\x80\x80", "\x80", "\xFF"})
    longctx::test::expect_error([&] { unicode::nfc(bad); }, {"not valid UTF-8"});
}

// ---- SentencePiece-style BPE ------------------------------------------------

// <unk> <s> </s>, the 256 byte tokens, "▁" and a few letters, then one token
// per merge. Layout "prepend": the Prepend + Replace normalizer and no
// pre-tokenizer (Llama 2); else a Metaspace pre-tokenizer with that prepend
// scheme. The expected ids below are what HF `tokenizers` gives for the same file.
json sp_json(const std::string& layout, bool split = true) {
  json vocab = json::object();
  for (const char* t : {"<unk>", "<s>", "</s>"}) vocab[t] = vocab.size();
  for (int b = 0; b < 256; b++) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = vocab.size();
  }
  for (const char* t : {"▁", "h", "e", "l", "o", "w", "r", "d"}) vocab[t] = vocab.size();
  json merges = json::array();
  for (auto [a, b] : std::vector<std::pair<std::string, std::string>>{{"▁", "h"},
                                                                      {"l", "l"},
                                                                      {"e", "ll"},
                                                                      {"▁h", "ell"},
                                                                      {"▁hell", "o"},
                                                                      {"▁", "w"},
                                                                      {"o", "r"},
                                                                      {"▁w", "or"},
                                                                      {"d", "▁"}}) {
    if (!vocab.contains(a + b)) vocab[a + b] = vocab.size();
    merges.push_back({a, b});
  }
  json j = {{"version", "1.0"},
            {"added_tokens", json::array()},
            {"post_processor", nullptr},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", "<unk>"},
              {"fuse_unk", true},
              {"byte_fallback", true},
              {"ignore_merges", false},
              {"vocab", vocab},
              {"merges", merges}}}};
  for (int i = 0; i < 3; i++) add_token(j, std::vector<std::string>{"<unk>", "<s>", "</s>"}[i], i, true);
  if (layout == "prepend") {
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Prepend"}, {"prepend", "▁"}},
                         {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}};
    j["pre_tokenizer"] = nullptr;
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  } else {
    const json meta = {
        {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", layout}, {"split", split}};
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = meta;
    j["decoder"] = meta;
  }
  return j;
}

TEST_F(TokenizerTest, SentencePiecePrependReplaceLayout) {
  const auto tok = load(sp_json("prepend"));
  EXPECT_EQ(tok->vocab_size(), 276);
  EXPECT_EQ(tok->encode("hello world"), Ids({271, 274, 262, 266}));
  EXPECT_EQ(tok->encode("hi"), Ids({267, 3 + 'i'}));            // byte fallback
  EXPECT_EQ(tok->encode("é"), Ids({259, 3 + 0xC3, 3 + 0xA9}));  // two bytes
  EXPECT_EQ(tok->encode(" hello"), Ids({259, 271}));
  EXPECT_EQ(tok->encode("hello  world world"), Ids({271, 259, 274, 262, 266, 274, 262, 266}));
  EXPECT_EQ(tok->encode("<s>hello</s> world"), Ids({1, 271, 2, 259, 274, 262, 266}))
      << "each stretch between special tokens gets its own ▁";
  EXPECT_TRUE(tok->encode("").empty());
  EXPECT_EQ(tok->decode({271, 274, 262, 266}), "hello world");
  EXPECT_EQ(tok->decode({259, 3 + 0xC3, 3 + 0xA9, 3 + 'i'}), "éi");
  EXPECT_EQ(tok->decode({1, 271, 2, 259, 274, 262, 266}), "<s> hello</s>  world");  // as HF
  for (const char* t : {"hello world", " x\ty\n", "日本語 🚀 ë", "  two  spaces  "})
    EXPECT_EQ(tok->decode(tok->encode(t)), t);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->token_id("▁hello"), 271);
  EXPECT_EQ(tok->token_id("<0x0A>"), 3 + 10);
}

TEST_F(TokenizerTest, SentencePieceUnknownsWithoutByteFallback) {
  json j = sp_json("prepend");
  j["model"]["byte_fallback"] = false;
  EXPECT_EQ(load(j)->encode("hi"), Ids({267, 0}));
  EXPECT_EQ(load(j)->encode("hiii"), Ids({267, 0})) << "fuse_unk";
  EXPECT_EQ(load(j)->decode({267, 0}), "h<unk>");
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(j)->encode("hiii"), Ids({267, 0, 0, 0}));
  j = sp_json("prepend");
  j["model"]["vocab"].erase("<0xA9>");  // "é" cannot fall back to bytes; HF writes its unk last
  EXPECT_EQ(load(j)->encode("éi"), Ids({259, 3 + 'i', 0}));
  EXPECT_EQ(load(j)->encode("éé"), Ids({259, 0}));
}

TEST_F(TokenizerTest, SentencePieceMetaspaceLayout) {
  // {scheme, "hello world", " hello", "<s>hello", "a b" (Metaspace decoder: byte tokens stay as text)}
  struct Case {
    const char* scheme;
    Ids hello_world, space_hello, s_hello;
    const char* s_hello_decoded;
  };
  const Ids h = {260, 269, 263};  // "hello" without ▁
  for (const Case& c :
       {Case{"first", {271, 274, 262, 266}, {271}, {1, 260, 269, 263}, "<s>hello"},
        Case{"always", {271, 274, 262, 266}, {271}, {1, 271}, "<s> hello"},
        Case{"never", {260, 269, 263, 274, 262, 266}, {271}, {1, 260, 269, 263}, "<s>hello"}}) {
    for (bool split : {true, false}) {
      SCOPED_TRACE(std::string(c.scheme) + (split ? " split" : " no split"));
      const auto tok = load(sp_json(c.scheme, split));
      EXPECT_EQ(tok->encode("hello world"), c.hello_world);
      EXPECT_EQ(tok->encode(" hello"), c.space_hello);
      EXPECT_EQ(tok->encode("<s>hello"), c.s_hello);
      EXPECT_EQ(tok->decode(c.s_hello), c.s_hello_decoded);
      EXPECT_EQ(tok->decode(tok->encode("hello world world")), "hello world world");
      EXPECT_EQ(tok->decode({259, 100, 259, 101}),
                std::string(c.scheme) == "never" ? " <0x61> <0x62>" : "<0x61> <0x62>");
      // "d▁" merges only when the text stays one word
      const Ids dd = tok->encode("d d");
      if (std::string(c.scheme) == "never")
        EXPECT_EQ(dd, split ? Ids({266, 259, 266}) : Ids({275, 266}));
      else
        EXPECT_EQ(dd, split ? Ids({259, 266, 259, 266}) : Ids({259, 275, 266}));
    }
  }
  EXPECT_EQ(load(sp_json("never"))->encode("hello"), h);
  json j = sp_json("first");  // files from before prepend_scheme: add_prefix_space
  j["pre_tokenizer"].erase("prepend_scheme");
  j["pre_tokenizer"]["add_prefix_space"] = true;
  EXPECT_EQ(load(j)->encode("<s>hello"), Ids({1, 271})) << "add_prefix_space true reads as always";
  j["pre_tokenizer"]["add_prefix_space"] = false;
  expect_rejected(j, {"add_prefix_space=false does not match prepend_scheme 'always'"});  // as HF
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(load(j)->encode("hello"), h);
}

TEST_F(TokenizerTest, NfcNormalizerBeforeByteLevel) {
  json j = bpe_json(kHelloMerges);
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = llama3_pre();
  add_token(j, "<|im_end|>", 263, true);
  add_token(j, "[cafe\u0301]", 264, false);  // normalized: matched as "[café]" in the NFC text
  const auto tok = load(j);
  EXPECT_EQ(tok->encode("cafe\u0301"), tok->encode("caf\u00E9"));
  EXPECT_EQ(tok->encode("e<|im_end|>\u0301"), Ids({'e', 263, 0xCC, 0x81})) << "normalized around specials";
  EXPECT_EQ(tok->encode("x[caf\u00E9]"), Ids({'x', 264}));
  EXPECT_EQ(tok->encode("x[cafe\u0301]"), Ids({'x', 264}));
  EXPECT_EQ(tok->decode(tok->encode("A\u030A and \u212B")), "\u00C5 and \u00C5");
}

TEST_F(TokenizerTest, LoadFromJsonText) {
  const std::string text = sp_json("prepend").dump();
  const auto tok = load_tokenizer_from_json(text, "mem:llama2", R"({"bos_token": "</s>"})");
  EXPECT_EQ(tok->encode("hello world"), Ids({271, 274, 262, 266}));
  EXPECT_EQ(tok->bos_id(), 2) << "from the config text";
  expect_error([&] { load_tokenizer_from_json("{", "mem:broken"); }, {"malformed JSON"}, "mem:broken");
  expect_error([&] { load_tokenizer_from_json(text, "mem:x", "[1,"); },
               {"tokenizer_config.json", "malformed"}, "");
}

TEST_F(TokenizerTest, UnsupportedSentencePieceParts) {
  json j = sp_json("prepend");
  j["decoder"] = nullptr;
  expect_rejected(j, {"decoder null is not supported"});
  j["decoder"] = {{"type", "WordPiece"}};
  expect_rejected(j, {"decoder 'WordPiece' is not supported"});
  j["decoder"] = {{"type", "Replace"}, {"pattern", {{"Regex", "▁+"}}}, {"content", " "}};
  expect_rejected(j, {"Replace decoder with a pattern other than a plain String"});
  j = sp_json("prepend");
  j["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", " +"}};
  expect_rejected(j, {"Replace normalizer with a pattern other than a plain String"});
  j = sp_json("first");
  j["pre_tokenizer"]["prepend_scheme"] = "sometimes";
  expect_rejected(j, {"prepend_scheme 'sometimes'"});
  j = sp_json("first");
  j["pre_tokenizer"]["replacement"] = "ab";
  expect_rejected(j, {"replacement 'ab' is not one character"});
  j = sp_json("first");
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {j["pre_tokenizer"], j["pre_tokenizer"]}}};
  expect_rejected(j, {"Metaspace pre_tokenizer together with other"});
}

}  // namespace

// Fuzzing findings (tests/fuzz/regress/tokenizer): each is a clean one-line
// error naming the file and the field, never a raw nlohmann exception or a
// float cast into an integer (undefined behaviour).
TEST(TokenizerFuzzFindings, NumbersThatAreNotIdsAreCleanErrors) {
  using longctx::test::expect_error;
  const std::string bl = R"("pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"})";
  expect_error([] { load_tokenizer_from_json(R"({"a": 1e999})", "t.json"); }, {"t.json", "malformed JSON"});
  expect_error(
      [&] {
        load_tokenizer_from_json(
            R"({"model": {"type": "BPE", "vocab": {"a": 2.5e90}, "merges": []}, )" + bl + "}", "t.json");
      },
      {"t.json", "vocab id of 'a'", "integer"});
  expect_error(
      [&] {
        load_tokenizer_from_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, )"
                                 R"("added_tokens": [{"id": 1e300, "content": "<s>", "special": true}], )" +
                                     bl + "}",
                                 "t.json");
      },
      {"t.json", "added token '<s>'", "integer"});
  expect_error(
      [] {
        load_tokenizer_from_json(
            R"({"model": {"type": "BPE", "vocab": {"a": 0, "<unk>": 1}, "merges": [], "byte_fallback": true,
                "unk_token": "<unk>"}, "normalizer": null,
                "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                  "split": false},
                "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"},
                            {"type": "Strip", "content": " ", "start": 1e300, "stop": 0}]}})",
            "t.json");
      },
      {"t.json", "Strip decoder's start", "integer"});
}
