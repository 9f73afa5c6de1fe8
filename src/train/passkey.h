// Passkey retrieval: a random numeric key hidden at a chosen depth in filler
// text, asked for at the end. Samples are built at the token level (pieces
// tokenised separately, then joined) so that the length is exact for any
// tokenizer and the answer tokens are known without searching.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/tokenizer.h"
#include "train/data.h"

namespace longctx {

struct PasskeySample {
  std::vector<int32_t> tokens;  // exactly total_tokens: [bos] filler, needle, filler, question, answer
  int64_t answer_start = 0;     // the answer (the key's tokens) ends the sample
  int64_t answer_len = 0;
  std::string key;           // the digits
  int64_t needle_start = 0;  // first token of the needle sentence
  int64_t needle_len = 0;
  int64_t question_start = 0;  // first token of the question
};

// depth in [0, 1]: where the needle goes within the filler, snapped to the
// nearest sentence boundary. Depends only on its arguments.
PasskeySample make_passkey_sample(const Tokenizer& tok, int64_t total_tokens, double depth, uint64_t seed,
                                  int digits);

// Each row is sample number n (counting across batches) of T + 1 tokens with a
// depth drawn in [depth_min, depth_max]; sample n depends only on (seed, n).
// Labels only on the answer tokens.
std::unique_ptr<DataSource> make_passkey_source(std::unique_ptr<Tokenizer> tok, const DataConfig& c,
                                                uint64_t seed);

// A seed for sample n of a run seeded with `seed` (a SplitMix64 mix).
uint64_t passkey_sample_seed(uint64_t seed, uint64_t n);

}  // namespace longctx
