#include "model/decode.h"

#include <algorithm>

#include "model/rope_table.h"
#include "ops/embedding.h"
#include "ops/lm_head_loss.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"

namespace longctx {

Decoder::Decoder(const LlamaConfig& c, Memory& mem, int64_t max_len) : c_(c), mem_(mem), max_len_(max_len) {
  cos_ = Buffer(mem, Tier::device, Tag::workspace, {max_len, c.head_dim / 2});
  sin_ = Buffer(mem, Tier::device, Tag::workspace, {max_len, c.head_dim / 2});
  // built on the host, then copied (the device tier may be GPU memory)
  std::vector<float> hc(size_t(max_len * (c.head_dim / 2))), hs(hc.size());
  rope_tables(c, max_len, hc.data(), hs.data());
  mem.copy(Tier::device, cos_.t().ptr, Tier::host, hc.data(), hc.size() * 4);
  mem.copy(Tier::device, sin_.t().ptr, Tier::host, hs.data(), hs.size() * 4);
  for (int64_t l = 0; l < c.num_hidden_layers; l++) {
    k_cache_.emplace_back(mem, Tier::device, Tag::kv_cache, Shape{max_len, c.kv_dim()});
    v_cache_.emplace_back(mem, Tier::device, Tag::kv_cache, Shape{max_len, c.kv_dim()});
  }
}

std::vector<float> Decoder::feed(const ParamSet& w, const std::vector<int32_t>& tokens, Context& ctx) {
  const int64_t n = int64_t(tokens.size()), C = c_.hidden_size;
  CHECK(n >= 1, "[decode] nothing to feed");
  CHECK(len_ + n <= max_len_, "[decode] ", len_, " + ", n, " tokens exceed the cache of ", max_len_);
  std::vector<int32_t> tok(tokens), pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) pos[size_t(i)] = int32_t(len_ + i);
  ActBuffer acts(block_act_table(c_, 1, n), mem_, Tier::device, Tag::activations);
  Buffer x(mem_, Tier::device, Tag::activations, {n, C}), y(mem_, Tier::device, Tag::activations, {n, C});
  Buffer rstd(mem_, Tier::device, Tag::activations, {n});
  Buffer dtok(mem_, Tier::device, Tag::data, {n}, DType::I32),
      dpos(mem_, Tier::device, Tag::data, {n}, DType::I32);
  copy_tensor(dtok.t(), Tensor(tok.data(), {n}, DType::I32, Tier::host), ctx);
  copy_tensor(dpos.t(), Tensor(pos.data(), {n}, DType::I32, Tier::host), ctx);
  BlockShared s;
  s.B = 1, s.T = n, s.pos = dpos.t(), s.cos = cos_.t(), s.sin = sin_.t();
  s.cache_len = len_;
  embedding_forward(x.t(), dtok.t(), w.embed, ctx);
  const BlockActs a = bind_acts(acts);
  for (int64_t l = 0; l < c_.num_hidden_layers; l++) {
    s.k_cache = k_cache_[size_t(l)].t(), s.v_cache = v_cache_[size_t(l)].t();
    s.layer = l;  // its attention window
    block_forward(y.t(), x.t(), w.layers[size_t(l)], a, c_, s, ctx);
    std::swap(x, y);
  }
  len_ += n;
  // only the last row needs logits
  Tensor last = x.t().slice0(n - 1, 1);
  rmsnorm_forward(y.t().slice0(0, 1), rstd.t().slice0(0, 1), last, w.final_norm, float(c_.rms_norm_eps), ctx);
  Buffer dl(mem_, Tier::device, Tag::workspace, {1, c_.vocab_size});
  matmul_forward(dl.t(), y.t().slice0(0, 1), w.lm_head, ctx);
  std::vector<float> logits(size_t(c_.vocab_size));
  copy_tensor(Tensor(logits.data(), {1, c_.vocab_size}, DType::F32, Tier::host), dl.t(), ctx);
  return logits;
}

std::vector<int32_t> greedy_generate(Decoder& d, const ParamSet& w, const std::vector<int32_t>& prompt,
                                     int64_t max_new, int32_t eos, Context& ctx) {
  std::vector<int32_t> out;
  if (max_new <= 0) return out;
  std::vector<float> logits = d.feed(w, prompt, ctx);
  for (int64_t i = 0; i < max_new; i++) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    if (next == eos || i + 1 == max_new) break;
    logits = d.feed(w, {next}, ctx);
  }
  return out;
}

}  // namespace longctx
