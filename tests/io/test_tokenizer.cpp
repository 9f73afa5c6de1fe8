// Tokenizers: the byte tokenizer, small hand-written tokenizer.json files with
// ids worked out by hand (merge ranks, ignore_merges, added tokens, both
// pre-tokenizer styles), and one test per rejected kind of file. Agreement
// with HF `tokenizers` on real trained files is tests/io/test_tokenizer_hf.py.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/check.h"
#include "harness.h"
#include "io/tokenizer.h"

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
  expect_rejected(j, {"byte_fallback"});
  j = bpe_json(kHelloMerges);
  j["model"]["dropout"] = 0.1;
  expect_rejected(j, {"dropout"});
  j = bpe_json(kHelloMerges);
  j["model"]["continuing_subword_prefix"] = "##";
  expect_rejected(j, {"continuing_subword_prefix"});
}

TEST_F(TokenizerTest, UnsupportedPipelineParts) {
  json j = bpe_json(kHelloMerges);
  j["normalizer"] = {{"type", "NFC"}};
  expect_rejected(j, {"normalizer 'NFC' is not supported"});
  j = bpe_json(kHelloMerges);
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  expect_rejected(j, {"pre_tokenizer type 'Metaspace' is not supported"});
  j["pre_tokenizer"] = nullptr;
  expect_rejected(j, {"pre_tokenizer is null"});
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
  expect_rejected(j, {"decoder 'Metaspace' is not supported"});
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
  expect_rejected(j, {"unexpected structure"});
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

}  // namespace
