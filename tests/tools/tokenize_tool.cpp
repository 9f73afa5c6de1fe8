// Test helper for tests/io/test_tokenizer_hf.py and test_tokenizer_sp.py: runs
// longctx's tokenizer on files of JSON lines so Python can compare it with HF
// `tokenizers` (and its NFC with unicodedata).
//   tokenize_tool encode TOKENIZER TEXTS   one JSON string per line -> one JSON id array per line
//   tokenize_tool decode TOKENIZER IDS     one JSON id array per line -> one JSON string per line
//   tokenize_tool info TOKENIZER [TOKEN...]  {"vocab_size", "bos", "eos", "ids": {TOKEN: id}}
//   tokenize_tool nfc unicode|tokenizers TEXTS  one JSON string per line -> its NFC, per line
// TOKENIZER is a tokenizer.json path or "byte". Errors: one line on stderr, exit 1.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/check.h"
#include "io/tokenizer.h"
#include "io/unicode_nfc.h"

using json = nlohmann::json;
using namespace longctx;

namespace {

std::unique_ptr<Tokenizer> open(const std::string& spec) {
  return spec == "byte" ? make_byte_tokenizer() : load_tokenizer(spec);
}

std::ifstream open_lines(const std::string& path) {
  std::ifstream f(path);
  CHECK(bool(f), "cannot open ", path);
  return f;
}

int encode(const Tokenizer& tok, const std::string& path) {
  std::ifstream f = open_lines(path);
  size_t texts = 0, bytes = 0, tokens = 0;
  double secs = 0;
  for (std::string line; std::getline(f, line);) {
    const std::string text = json::parse(line).get<std::string>();
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok.encode(text);
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << json(ids).dump() << "\n";
    texts++, bytes += text.size(), tokens += ids.size();
  }
  std::fprintf(stderr, "tokenize_tool: %zu texts, %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", texts,
               bytes, tokens, secs, secs > 0 ? double(bytes) / secs / 1e6 : 0.0);
  return 0;
}

int decode(const Tokenizer& tok, const std::string& path) {
  std::ifstream f = open_lines(path);
  for (std::string line; std::getline(f, line);) {
    const std::string text = tok.decode(json::parse(line).get<std::vector<int32_t>>());
    std::cout << json(text).dump(-1, ' ', true, json::error_handler_t::replace) << "\n";
  }
  return 0;
}

int info(const Tokenizer& tok, int argc, char** argv) {
  json ids = json::object();
  for (int i = 3; i < argc; i++) ids[argv[i]] = tok.token_id(argv[i]);
  std::cout << json{{"vocab_size", tok.vocab_size()},
                    {"bos", tok.bos_id()},
                    {"eos", tok.eos_id()},
                    {"ids", ids}}
            << "\n";
  return 0;
}

int nfc(const std::string& data, const std::string& path) {
  CHECK(data == "unicode" || data == "tokenizers", "nfc: unicode or tokenizers, not ", data);
  const auto which = data == "unicode" ? unicode::NfcData::kUnicode : unicode::NfcData::kTokenizers;
  std::ifstream f = open_lines(path);
  size_t bytes = 0;
  double secs = 0;
  for (std::string line; std::getline(f, line);) {
    const std::string text = json::parse(line).get<std::string>();
    const auto t0 = std::chrono::steady_clock::now();
    const std::string out = unicode::nfc(text, which);
    secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bytes += text.size();
    std::cout << json(out).dump() << "\n";
  }
  std::fprintf(stderr, "tokenize_tool: NFC (Unicode %s) of %zu bytes in %.3f s\n", unicode::unicode_version(),
               bytes, secs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc < 3 || (mode != "info" && argc != 4) ||
      (mode != "encode" && mode != "decode" && mode != "info" && mode != "nfc")) {
    std::fprintf(stderr,
                 "usage: tokenize_tool encode|decode TOKENIZER FILE | info TOKENIZER [TOKEN...] | "
                 "nfc unicode|tokenizers FILE\n");
    return 2;
  }
  try {
    if (mode == "nfc") return nfc(argv[2], argv[3]);
    const auto tok = open(argv[2]);
    if (mode == "encode") return encode(*tok, argv[3]);
    if (mode == "decode") return decode(*tok, argv[3]);
    return info(*tok, argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
