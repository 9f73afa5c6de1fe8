#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "io/npy.h"
#include "io/token_shards.h"
#include "ops/matmul.h"
#include "train/data.h"
#include "train/grad_step.h"
#include "train/passkey.h"

namespace longctx {

PerplexityResult eval_perplexity(const LlamaConfig& c, const ParamSet& w, const std::string& tokens_path,
                                 int64_t seq_len, int64_t max_windows, Memory& mem, Context& ctx) {
  const bool shard = tokens_path.size() > 4 && tokens_path.substr(tokens_path.size() - 4) == ".bin";
  const std::vector<int32_t> toks = shard ? read_token_shard(tokens_path) : load_tokens_npy(tokens_path).ids;
  CHECK(int64_t(toks.size()) >= seq_len + 1, tokens_path, ": ", toks.size(),
        " tokens, fewer than one window of ", seq_len + 1);
  for (size_t i = 0; i < toks.size(); i++)
    CHECK(toks[i] >= 0 && toks[i] < c.vocab_size, tokens_path, ": token id ", toks[i], " at offset ", i,
          " is outside the model's vocabulary [0, ", c.vocab_size, ")");
  GradStep step(c, mem, 1, seq_len);
  PerplexityResult r;
  double sum = 0;
  for (int64_t s0 = 0; s0 + seq_len < int64_t(toks.size()); s0 += seq_len) {
    if (max_windows > 0 && r.windows >= max_windows) break;
    std::vector<int32_t> in(toks.begin() + s0, toks.begin() + s0 + seq_len);
    std::vector<int32_t> lab(toks.begin() + s0 + 1, toks.begin() + s0 + seq_len + 1);
    const StepInput x{Tensor(in.data(), {1, seq_len}, DType::I32),
                      Tensor(lab.data(), {1, seq_len}, DType::I32), Tensor(), Tensor()};
    sum += step.forward_loss(w, x, ctx) * double(seq_len);
    r.tokens += seq_len;
    r.windows++;
  }
  r.loss = sum / double(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

double PasskeyGrid::at_length(size_t i) const {
  double s = 0;
  for (double a : accuracy[i]) s += a;
  return accuracy[i].empty() ? 0 : s / double(accuracy[i].size());
}

namespace {

// Adds 1 to right[k] for every answer token k the model predicts; true when all are.
bool passkey_correct(GradStep& step, const LlamaConfig& c, const ParamSet& w, const PasskeySample& s,
                     std::vector<double>& right, Context& ctx) {
  const int64_t T = int64_t(s.tokens.size()) - 1;
  std::vector<int32_t> in(s.tokens.begin(), s.tokens.end() - 1), lab(s.tokens.begin() + 1, s.tokens.end());
  const Tensor h = step.forward_hidden(w,
                                       StepInput{Tensor(in.data(), {1, T}, DType::I32),
                                                 Tensor(lab.data(), {1, T}, DType::I32), Tensor(), Tensor()},
                                       ctx);
  std::vector<float> logits(size_t(c.vocab_size));
  Buffer dl(*ctx.mem, Tier::device, Tag::workspace, {1, c.vocab_size});  // the device tier may be GPU memory
  if (right.size() < size_t(s.answer_len)) right.resize(size_t(s.answer_len), 0.0);
  bool all = true;
  for (int64_t k = 0; k < s.answer_len; k++) {
    const int64_t row = s.answer_start - 1 + k;  // predicts token answer_start + k
    matmul_forward(dl.t(), h.slice0(row, 1), w.lm_head, ctx);
    copy_tensor(Tensor(logits.data(), {1, c.vocab_size}, DType::F32, Tier::host), dl.t(), ctx);
    const int64_t arg = std::max_element(logits.begin(), logits.end()) - logits.begin();
    const bool ok = arg == s.tokens[size_t(s.answer_start + k)];
    right[size_t(k)] += ok;
    all = all && ok;
  }
  return all;
}

}  // namespace

PasskeyGrid eval_passkey(const LlamaConfig& c, const ParamSet& w, const Tokenizer& tok,
                         const std::vector<int64_t>& lengths, const std::vector<double>& depths,
                         int64_t samples, uint64_t seed, int digits, Memory& mem, Context& ctx) {
  PasskeyGrid g{lengths, depths, {}, {}};
  for (int64_t L : lengths) {
    GradStep step(c, mem, 1, L - 1);
    std::vector<double> row, tokens_right;
    int64_t count = 0;
    for (double d : depths) {
      int64_t right = 0;
      for (int64_t i = 0; i < samples; i++) {
        const uint64_t sd =
            passkey_sample_seed(seed, uint64_t(L) * 1000003u + uint64_t(d * 1000) * 101u + uint64_t(i));
        right += passkey_correct(step, c, w, make_passkey_sample(tok, L, d, sd, digits), tokens_right, ctx);
        count++;
      }
      row.push_back(double(right) / double(std::max<int64_t>(samples, 1)));
    }
    g.accuracy.push_back(row);
    for (double& r : tokens_right) r /= double(std::max<int64_t>(count, 1));
    g.token_accuracy.push_back(tokens_right);
  }
  return g;
}

std::string format_passkey_table(const PasskeyGrid& g) {
  std::string out = "passkey accuracy (rows: length in tokens, columns: depth)\n";
  char buf[64];
  out += "  length";
  for (double d : g.depths) std::snprintf(buf, sizeof buf, "  %5.2f", d), out += buf;
  out += "   mean\n";
  for (size_t i = 0; i < g.lengths.size(); i++) {
    std::snprintf(buf, sizeof buf, "%8lld", (long long)g.lengths[i]);
    out += buf;
    for (double a : g.accuracy[i]) std::snprintf(buf, sizeof buf, "  %4.0f%%", 100 * a), out += buf;
    std::snprintf(buf, sizeof buf, "  %4.0f%%", 100 * g.at_length(i));
    out += buf;
    if (i < g.token_accuracy.size()) {
      out += "   per key token:";
      for (double a : g.token_accuracy[i]) std::snprintf(buf, sizeof buf, " %.0f%%", 100 * a), out += buf;
    }
    out += "\n";
  }
  return out;
}

}  // namespace longctx
