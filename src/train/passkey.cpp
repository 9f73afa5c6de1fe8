#include "train/passkey.h"

#include <cmath>

#include "core/check.h"
#include "ops/lm_head_loss.h"

namespace longctx {

namespace {

// SplitMix64: our own generator rather than std:: distributions, whose output
// differs between standard libraries; eval grids must match across machines.
uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
double uniform01(uint64_t& s) { return double(splitmix64(s) >> 11) * 0x1.0p-53; }

const char* const kFiller[] = {
    "The grass is green.",         "The sky is blue.",
    "The sun is yellow.",          "Here we go.",
    "There and back again.",       "The river runs to the sea.",
    "Birds sing in the morning.",  "The hills are quiet.",
    "Leaves fall in the autumn.",  "The road goes on and on.",
    "Clouds drift over the town.", "The night is calm and dark.",
};
constexpr int kFillerCount = int(sizeof(kFiller) / sizeof(kFiller[0]));

// A piece's tokens; a tokenizer that prepends bos to every encode() would
// otherwise scatter bos tokens through the sample.
std::vector<int32_t> piece(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> v = tok.encode(text);
  if (!v.empty() && tok.bos_id() >= 0 && v.front() == tok.bos_id()) v.erase(v.begin());
  return v;
}

std::string random_key(uint64_t& rng, int digits) {
  std::string key;
  for (int i = 0; i < digits; i++) {
    const bool lead = i == 0 && digits > 1;  // a `digits`-digit number: no leading zero
    key += char('0' + (lead ? 1 + splitmix64(rng) % 9 : splitmix64(rng) % 10));
  }
  return key;
}

// Exactly n filler tokens of whole sentences (the last one cut).
std::vector<int32_t> filler(const Tokenizer& tok, int64_t n, uint64_t& rng) {
  std::vector<std::vector<int32_t>> sentences;
  for (const char* s : kFiller) sentences.push_back(piece(tok, std::string(" ") + s));
  std::vector<int32_t> out;
  out.reserve(size_t(n));
  while (int64_t(out.size()) < n) {
    const auto& s = sentences[splitmix64(rng) % kFillerCount];
    CHECK(!s.empty(), "passkey: the tokenizer encodes a filler sentence to no tokens");
    out.insert(out.end(), s.begin(), s.end());
  }
  out.resize(size_t(n));
  return out;
}

template <class V>
void append(std::vector<int32_t>& out, const V& v, size_t from = 0, size_t to = SIZE_MAX) {
  out.insert(out.end(), v.begin() + ptrdiff_t(from), v.begin() + ptrdiff_t(std::min(to, v.size())));
}

}  // namespace

uint64_t passkey_sample_seed(uint64_t seed, uint64_t n) {
  uint64_t s = seed;
  uint64_t m = n ^ splitmix64(s);
  return splitmix64(m);
}

PasskeySample make_passkey_sample(const Tokenizer& tok, int64_t total_tokens, double depth, uint64_t seed,
                                  int digits) {
  CHECK(digits >= 1 && digits <= 18, "passkey: digits must be in [1, 18], got ", digits);
  CHECK(depth >= 0.0 && depth <= 1.0, "passkey: depth must be in [0, 1], got ", depth);
  uint64_t rng = seed;
  PasskeySample s;
  s.key = random_key(rng, digits);
  const std::vector<int32_t> needle =
      piece(tok, " The pass key is " + s.key + ". Remember it. " + s.key + " is the pass key.");
  const std::vector<int32_t> question = piece(tok, " What is the pass key? The pass key is ");
  const std::vector<int32_t> answer = piece(tok, s.key);
  const int64_t prefix = tok.bos_id() >= 0 ? 1 : 0;
  const int64_t fixed = prefix + int64_t(needle.size() + question.size() + answer.size());
  CHECK(total_tokens >= fixed, "passkey: a sample of ", total_tokens,
        " tokens cannot hold the needle, question ", "and answer (", fixed,
        " tokens); use a longer sequence");

  const std::vector<int32_t> fill = filler(tok, total_tokens - fixed, rng);
  // The needle goes at any token, not only at sentence starts: with few
  // possible places (short samples) a model learns the distances from the
  // question to the needle instead of finding the key by its content.
  const int64_t at = std::llround(depth * double(fill.size()));
  s.tokens.reserve(size_t(total_tokens));
  if (prefix) s.tokens.push_back(tok.bos_id());
  append(s.tokens, fill, 0, size_t(at));
  s.needle_start = int64_t(s.tokens.size());
  s.needle_len = int64_t(needle.size());
  append(s.tokens, needle);
  append(s.tokens, fill, size_t(at));
  s.question_start = int64_t(s.tokens.size());
  append(s.tokens, question);
  s.answer_start = int64_t(s.tokens.size());
  s.answer_len = int64_t(answer.size());
  append(s.tokens, answer);
  return s;
}

namespace {

class PasskeySource : public DataSource {
 public:
  PasskeySource(std::unique_ptr<Tokenizer> tok, const DataConfig& c, uint64_t seed)
      : tok_(std::move(tok)),
        seed_(seed),
        digits_(int(c.passkey_digits)),
        dmin_(c.depth_min),
        dmax_(c.depth_max),
        all_(c.passkey_loss == "all"),
        min_len_(c.passkey_min_len),
        span_(c.passkey_position_span) {
    CHECK(c.passkey_digits >= 1 && c.passkey_digits <= 18, "data.passkey_digits must be in [1, 18], got ",
          c.passkey_digits);
    CHECK(0.0 <= dmin_ && dmin_ <= dmax_ && dmax_ <= 1.0,
          "data.depth_min and depth_max must satisfy 0 <= min <= max <= 1, got ", dmin_, " and ", dmax_);
  }

  void next(Batch& b, int64_t B, int64_t T) override {
    CHECK(B >= 1 && T >= 1, "data: batch shape (", B, ", ", T, ") must be positive");
    b.B = B, b.T = T;
    for (auto* v : {&b.inputs, &b.labels, &b.positions, &b.doc_ids}) v->assign(size_t(B * T), 0);
    for (int64_t r = 0; r < B; r++) fill_row(b, r, T, sample_++);
  }

  nlohmann::json state() const override {
    return {{"kind", "passkey"}, {"sample", sample_}, {"seed", seed_}};
  }

  void restore(const nlohmann::json& s) override {
    CHECK(s.value("kind", "") == "passkey", "data: cannot restore a '", s.value("kind", "?"),
          "' data state into a passkey source");
    sample_ = s.at("sample").get<uint64_t>();
    seed_ = s.at("seed").get<uint64_t>();  // the run continues with the samples it would have drawn
  }

  int64_t vocab_needed() const override { return tok_->vocab_size(); }

 private:
  // Row r: one sample of T tokens, or (passkey_min_len) several packed ones.
  void fill_row(Batch& b, int64_t r, int64_t T, uint64_t n) const {
    uint64_t rng = passkey_sample_seed(seed_, n);
    int64_t at = 0;
    for (int32_t doc = 0; at < T; doc++) {
      int64_t len = T - at;
      if (min_len_ > 0 && len >= 2 * min_len_) {  // log-uniform in [min_len, len]
        const double u = uniform01(rng);
        len = std::min(len, int64_t(double(min_len_) * std::pow(double(len) / double(min_len_), u)));
        if (T - at - len < min_len_) len = T - at;  // no leftover too short for a sample
      }
      const double depth = dmin_ + (dmax_ - dmin_) * uniform01(rng);
      const PasskeySample s = make_passkey_sample(*tok_, len + 1, depth, splitmix64(rng), digits_);
      // position skipping: the positions jump by `skip` somewhere in the filler between the needle and
      // the question, so a short sample spans question-to-needle distances up to the span
      int64_t split = len, skip = 0;
      if (span_ > len + 1) {
        const int64_t lo = s.needle_start + s.needle_len, hi = s.question_start;
        split = lo + int64_t(splitmix64(rng) % uint64_t(std::max<int64_t>(1, hi - lo + 1)));
        skip = int64_t(splitmix64(rng) % uint64_t(span_ - len));
      }
      const size_t o = size_t(r * T + at);
      for (int64_t t = 0; t < len; t++) {
        b.inputs[o + t] = s.tokens[size_t(t)];
        b.labels[o + t] = all_ || t + 1 >= s.answer_start ? s.tokens[size_t(t + 1)] : kIgnoreIndex;
        b.positions[o + t] = int32_t(t < split ? t : t + skip);
        b.doc_ids[o + t] = doc;
      }
      at += len;
    }
  }

  std::unique_ptr<Tokenizer> tok_;
  uint64_t seed_, sample_ = 0;
  int digits_;
  double dmin_, dmax_;
  bool all_;         // labels on every token, not just the answer
  int64_t min_len_;  // > 0: pack samples of lengths in [min_len, T] into each row
  int64_t span_;     // > 0: positions of each sample spread over [0, span) by one skip
};

}  // namespace

std::unique_ptr<DataSource> make_passkey_source(std::unique_ptr<Tokenizer> tok, const DataConfig& c,
                                                uint64_t seed) {
  return std::make_unique<PasskeySource>(std::move(tok), c, seed);
}

}  // namespace longctx
