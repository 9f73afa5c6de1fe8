// Evaluation: perplexity on held-out tokens, passkey retrieval accuracy over
// a grid of lengths x depths.
#pragma once
#include <string>
#include <vector>

#include "core/context.h"
#include "io/tokenizer.h"
#include "model/params.h"

namespace longctx {

struct PerplexityResult {
  double loss = 0, perplexity = 0;
  int64_t tokens = 0, windows = 0;
};
// Mean loss over consecutive windows of seq_len + 1 tokens of a .npy/.bin file
// (at most max_windows of them; 0: all).
PerplexityResult eval_perplexity(const LlamaConfig& c, const ParamSet& w, const std::string& tokens_path,
                                 int64_t seq_len, int64_t max_windows, Memory& mem, Context& ctx);

struct PasskeyGrid {
  std::vector<int64_t> lengths;
  std::vector<double> depths;
  std::vector<std::vector<double>> accuracy;  // [length][depth]
  // [length][k]: how often answer token k was right (teacher-forced), over all
  // depths and samples; shows which part of the key a model still misses
  std::vector<std::vector<double>> token_accuracy;
  double at_length(size_t i) const;  // mean over depths
};
// A sample is right when greedy decoding after the question reproduces every
// key token (checked by argmax at each answer position: the same as greedy
// decoding while the answer so far is right).
PasskeyGrid eval_passkey(const LlamaConfig& c, const ParamSet& w, const Tokenizer& tok,
                         const std::vector<int64_t>& lengths, const std::vector<double>& depths,
                         int64_t samples, uint64_t seed, int digits, Memory& mem, Context& ctx);
std::string format_passkey_table(const PasskeyGrid& g);

}  // namespace longctx
