#include "model/block.h"

#include <cstring>

#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace longctx {

std::vector<ActSpec> block_act_table(const LlamaConfig& c, int64_t B, int64_t T) {
  const int64_t N = B * T, C = c.hidden_size, F = c.intermediate_size, Cq = c.q_dim(), Ckv = c.kv_dim();
  return {{"ln1", {N, C}},
          {"rstd1", {N}},
          {"q", {N, Cq}},
          {"k", {N, Ckv}},
          {"v", {N, Ckv}},
          {"att", {N, Cq}},
          {"lse", {B, c.num_attention_heads, T}},
          {"x2", {N, C}},
          {"ln2", {N, C}},
          {"rstd2", {N}},
          {"gate", {N, F}},
          {"up", {N, F}},
          {"hmlp", {N, F}}};
}

std::vector<ActSpec> block_grad_table(const LlamaConfig& c, int64_t B, int64_t T) {
  const int64_t N = B * T, C = c.hidden_size, Cq = c.q_dim(), Ckv = c.kv_dim();
  return {{"datt", {N, Cq}}, {"dq", {N, Cq}}, {"dk", {N, Ckv}}, {"dv", {N, Ckv}}, {"dln", {N, C}}};
}

static int64_t padded(int64_t n) { return (n + 15) / 16 * 16; }

int64_t table_bytes(const std::vector<ActSpec>& t) {
  int64_t n = 0;
  for (const auto& r : t) n += padded(r.shape.numel());
  return n * 4;
}

ActBuffer::ActBuffer(const std::vector<ActSpec>& table, Memory& mem, Tier tier, Tag tag)
    : table_(table), storage_(mem, tier, tag, {table_bytes(table) / 4}) {
  float* p = storage_.f32();
  for (const auto& r : table_) {
    views_.emplace_back(p, r.shape, DType::F32, tier);
    p += padded(r.shape.numel());
  }
}

Tensor ActBuffer::get(const char* name) const {
  for (size_t i = 0; i < table_.size(); i++)
    if (std::strcmp(table_[i].name, name) == 0) return views_[i];
  FAIL("no activation named '", name, "'");
}

BlockActs bind_acts(const ActBuffer& b) {
  return {b.get("ln1"),  b.get("rstd1"), b.get("q"),   b.get("k"),   b.get("v"),
          b.get("att"),  b.get("lse"),   b.get("x2"),  b.get("ln2"), b.get("rstd2"),
          b.get("gate"), b.get("up"),    b.get("hmlp")};
}

BlockGrads bind_grads(const ActBuffer& b) {
  return {b.get("datt"), b.get("dq"), b.get("dk"), b.get("dv"), b.get("dln")};
}

namespace {
// (N, H*HS) viewed as (N, H, HS) for rope, or (B, T, H, HS) for attention.
Tensor heads3(Tensor t, int64_t H, int64_t HS) { return t.view({t.dim(0), H, HS}); }
Tensor heads4(Tensor t, const BlockShared& s, int64_t H, int64_t HS) { return t.view({s.B, s.T, H, HS}); }
}  // namespace

void block_forward(Tensor out, Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                   const BlockShared& s, Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
  const float eps = float(c.rms_norm_eps);
  // attention half: x2 = inp + o_proj(attn(rope(q), rope(k), v))
  rmsnorm_forward(a.ln1, a.rstd1, inp, w.ln1, eps, ctx);
  matmul_forward(a.q, a.ln1, w.wq, ctx);
  matmul_forward(a.k, a.ln1, w.wk, ctx);
  matmul_forward(a.v, a.ln1, w.wv, ctx);
  rope_forward(heads3(a.q, NH, HS), heads3(a.q, NH, HS), s.pos, s.cos, s.sin, ctx);
  rope_forward(heads3(a.k, NKV, HS), heads3(a.k, NKV, HS), s.pos, s.cos, s.sin, ctx);
  if (s.k_cache.defined()) {
    CHECK(s.B == 1 && s.cache_len + s.T <= s.k_cache.dim(0), "[block] KV cache of ", s.k_cache.dim(0),
          " rows cannot take ", s.T, " more after ", s.cache_len, " (batch ", s.B, ")");
    const int64_t Tk = s.cache_len + s.T;
    copy_tensor(s.k_cache.slice0(s.cache_len, s.T), a.k, ctx);
    copy_tensor(s.v_cache.slice0(s.cache_len, s.T), a.v, ctx);
    AttentionParams p = s.attn;
    p.q_offset = s.cache_len;
    attention_forward(heads4(a.att, s, NH, HS), a.lse, heads4(a.q, s, NH, HS),
                      s.k_cache.slice0(0, Tk).view({1, Tk, NKV, HS}),
                      s.v_cache.slice0(0, Tk).view({1, Tk, NKV, HS}), p, ctx);
  } else {
    attention_forward(heads4(a.att, s, NH, HS), a.lse, heads4(a.q, s, NH, HS), heads4(a.k, s, NKV, HS),
                      heads4(a.v, s, NKV, HS), s.attn, ctx);
  }
  matmul_forward(out, a.att, w.wo, ctx);  // out used as scratch for the o_proj output
  add_forward(a.x2, inp, out, ctx);
  // MLP half: out = x2 + down(silu(gate(ln2)) * up(ln2))
  rmsnorm_forward(a.ln2, a.rstd2, a.x2, w.ln2, eps, ctx);
  matmul_forward(a.gate, a.ln2, w.wgate, ctx);
  matmul_forward(a.up, a.ln2, w.wup, ctx);
  swiglu_forward(a.hmlp, a.gate, a.up, ctx);
  matmul_forward(out, a.hmlp, w.wdown, ctx);
  add_forward(out, out, a.x2, ctx);
}

void block_backward(Tensor dx, Tensor inp, const LayerParams& w, const LayerParams& dw, const BlockActs& a,
                    const BlockGrads& g, const LlamaConfig& c, const BlockShared& s, Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
  // MLP half. dx holds d(out); the residual passes it to x2 unchanged.
  matmul_backward(Tensor(), dw.wdown, dx, a.hmlp, w.wdown, ctx);
  matmul_backward(a.hmlp, Tensor(), dx, a.hmlp, w.wdown, ctx);  // hmlp := d(hmlp), after dW used it
  swiglu_backward(a.gate, a.up, a.hmlp, a.gate, a.up, ctx);     // gate, up := their gradients
  matmul_backward(g.dln, dw.wgate, a.gate, a.ln2, w.wgate, ctx);
  matmul_backward(g.dln, dw.wup, a.up, a.ln2, w.wup, ctx, /*accumulate=*/true);
  rmsnorm_backward(dx, dw.ln2, g.dln, a.x2, w.ln2, a.rstd2, ctx, /*accumulate=*/true);  // dx = d(x2)
  // attention half
  matmul_backward(g.datt, dw.wo, dx, a.att, w.wo, ctx);
  attention_backward(heads4(g.dq, s, NH, HS), heads4(g.dk, s, NKV, HS), heads4(g.dv, s, NKV, HS),
                     heads4(g.datt, s, NH, HS), heads4(a.q, s, NH, HS), heads4(a.k, s, NKV, HS),
                     heads4(a.v, s, NKV, HS), heads4(a.att, s, NH, HS), a.lse, s.attn, ctx);
  rope_backward(heads3(g.dq, NH, HS), heads3(g.dq, NH, HS), s.pos, s.cos, s.sin, ctx);
  rope_backward(heads3(g.dk, NKV, HS), heads3(g.dk, NKV, HS), s.pos, s.cos, s.sin, ctx);
  matmul_backward(g.dln, dw.wq, g.dq, a.ln1, w.wq, ctx);
  matmul_backward(g.dln, dw.wk, g.dk, a.ln1, w.wk, ctx, true);
  matmul_backward(g.dln, dw.wv, g.dv, a.ln1, w.wv, ctx, true);
  rmsnorm_backward(dx, dw.ln1, g.dln, inp, w.ln1, a.rstd1, ctx, true);  // dx = d(inp)
}

}  // namespace longctx
