// Inference with a KV cache: prefill a prompt, then one token at a time.
#pragma once
#include <memory>
#include <vector>

#include "model/block.h"
#include "model/params.h"

namespace longctx {

class Decoder {
 public:
  Decoder(const LlamaConfig& c, Memory& mem, int64_t max_len);
  // Runs `tokens` at positions [length(), length() + n) through every block,
  // appending their K/V to the cache; returns the logits (V) of the last one.
  std::vector<float> feed(const ParamSet& w, const std::vector<int32_t>& tokens, Context& ctx);
  int64_t length() const { return len_; }
  void reset() { len_ = 0; }

 private:
  LlamaConfig c_;
  Memory& mem_;
  int64_t max_len_, len_ = 0;
  Buffer cos_, sin_;                       // (max_len, HS/2)
  std::vector<Buffer> k_cache_, v_cache_;  // L x (max_len, Ckv)
};

// Greedy decoding: the prompt, then up to max_new argmax tokens (stopping
// after eos when eos >= 0). Returns only the new tokens.
std::vector<int32_t> greedy_generate(Decoder& d, const ParamSet& w, const std::vector<int32_t>& prompt,
                                     int64_t max_new, int32_t eos, Context& ctx);

}  // namespace longctx
