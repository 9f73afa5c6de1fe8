#include "model/block.h"

#include <algorithm>
#include <cstring>

#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"

namespace longctx {

std::vector<ActSpec> block_act_table(const LlamaConfig& c, int64_t B, int64_t T, int64_t mlp_tile) {
  const int64_t N = B * T, C = c.hidden_size, F = c.intermediate_size, Cq = c.q_dim(), Ckv = c.kv_dim();
  const int64_t M = mlp_tile > 0 ? std::min(mlp_tile, N) : N;
  return {{"ln1", {N, C}},
          {"rstd1", {N}},
          {"q", {N, Cq}},
          {"k", {N, Ckv}},
          {"v", {N, Ckv}},
          {"att", {N, Cq}},
          {"lse", {B, c.num_attention_heads, T}},
          {"x2", {N, C}},
          {"ln2", {M, C}},
          {"rstd2", {M}},
          {"gate", {M, F}},
          {"up", {M, F}},
          {"hmlp", {M, F}}};
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
  return Tensor();
}

BlockActs bind_acts(const ActBuffer& kept, const ActBuffer& scratch) {
  auto get = [&](const char* name) {
    Tensor t = kept.get(name);
    if (!t.defined()) t = scratch.get(name);
    CHECK(t.defined(), "[block] no activation row named '", name, "'");
    return t;
  };
  return {get("ln1"), get("rstd1"), get("q"),     get("k"),    get("v"),  get("att"), get("lse"),
          get("x2"),  get("ln2"),   get("rstd2"), get("gate"), get("up"), get("hmlp")};
}

BlockActs bind_acts(const ActBuffer& b) { return bind_acts(b, b); }

BlockGrads bind_grads(const ActBuffer& b) {
  return {b.get("datt"), b.get("dq"), b.get("dk"), b.get("dv"), b.get("dln")};
}

namespace {
// The first n rows of an (N, r) LoRA scratch.
Tensor rows_of(const Tensor& t, int64_t n) { return t.slice0(0, n); }

// y (n, OC) = (or += when acc) x W^T + s (x A^T) B^T.
void linear_fwd(Tensor y, Tensor x, Tensor W, const LoraPair& l, const BlockShared& s, Context& ctx,
                bool acc = false) {
  matmul_forward(y, x, W, ctx, acc);
  if (!l.A.defined()) return;
  const Tensor u = rows_of(s.lora_u, x.dim(0));
  matmul_forward(u, x, l.A, ctx);
  scale_inplace(u, s.lora_scale, ctx);
  matmul_forward(y, u, l.B, ctx, /*accumulate=*/true);
}

// dW += dy^T x, dx = (or += when acc) dy W, and the adapters' share: dA, dB +=,
// dx += s (dy B) A. Every use of x comes before dx is written (dx may alias x).
void linear_bwd(Tensor dx, Tensor dW, Tensor dy, Tensor x, Tensor W, const LoraPair& l, const LoraPair& dl,
                const BlockShared& s, Context& ctx, bool acc = false) {
  const int64_t n = x.dim(0);
  const Tensor u = l.A.defined() ? rows_of(s.lora_u, n) : Tensor(),
               g = l.A.defined() ? rows_of(s.lora_g, n) : Tensor();
  if (l.A.defined()) {
    matmul_forward(u, x, l.A, ctx);
    scale_inplace(u, s.lora_scale, ctx);                                   // u = s x A^T
    if (dl.B.defined()) matmul_backward(Tensor(), dl.B, dy, u, l.B, ctx);  // dB += dy^T u
    matmul_backward(g, Tensor(), dy, u, l.B, ctx);                         // g = dy B
    scale_inplace(g, s.lora_scale, ctx);
    if (dl.A.defined()) matmul_backward(Tensor(), dl.A, g, x, l.A, ctx);  // dA += g^T x
  }
  if (dW.defined()) matmul_backward(Tensor(), dW, dy, x, W, ctx);
  if (dx.defined()) {
    matmul_backward(dx, Tensor(), dy, x, W, ctx, acc);
    if (l.A.defined()) matmul_backward(dx, Tensor(), g, x, l.A, ctx, /*accumulate=*/true);
  }
}

// (N, H*HS) viewed as (N, H, HS) for rope, or (B, T, H, HS) for attention.
Tensor heads3(Tensor t, int64_t H, int64_t HS) { return t.view({t.dim(0), H, HS}); }
Tensor heads4(Tensor t, const BlockShared& s, int64_t H, int64_t HS) { return t.view({s.B, s.T, H, HS}); }
}  // namespace

namespace {
// a.ln1, a.rstd1 from inp; a.k (after rope), a.v from a.ln1: every row's keys and values.
void ln1_kv_forward(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                    const BlockShared& s, Context& ctx) {
  const int64_t NKV = c.num_key_value_heads, HS = c.head_dim;
  rmsnorm_forward(a.ln1, a.rstd1, inp, w.ln1, float(c.rms_norm_eps), ctx);
  linear_fwd(a.k, a.ln1, w.wk, w.lora.k, s, ctx);
  linear_fwd(a.v, a.ln1, w.wv, w.lora.v, s, ctx);
  rope_forward(heads3(a.k, NKV, HS), heads3(a.k, NKV, HS), s.pos, s.cos, s.sin, ctx);
}
}  // namespace

void attn_half_forward(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                       const BlockShared& s, Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
  // x2 = inp + o_proj(attn(rope(q), rope(k), v))
  rmsnorm_forward(a.ln1, a.rstd1, inp, w.ln1, float(c.rms_norm_eps), ctx);
  linear_fwd(a.q, a.ln1, w.wq, w.lora.q, s, ctx);
  linear_fwd(a.k, a.ln1, w.wk, w.lora.k, s, ctx);
  linear_fwd(a.v, a.ln1, w.wv, w.lora.v, s, ctx);
  rope_forward(heads3(a.q, NH, HS), heads3(a.q, NH, HS), s.pos, s.cos, s.sin, ctx);
  rope_forward(heads3(a.k, NKV, HS), heads3(a.k, NKV, HS), s.pos, s.cos, s.sin, ctx);
  if (s.runner) {
    s.runner->forward(s.layer, a, ctx);
  } else if (s.k_cache.defined()) {
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
  copy_tensor(a.x2, inp, ctx);
  linear_fwd(a.x2, a.att, w.wo, w.lora.o, s, ctx, /*acc=*/true);
}

void AttentionRunner::store_kv(int64_t, const BlockActs&, Context&) {
  FAIL("[block] this attention runner keeps no K/V cache");
}

void attn_half_kv(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                  const BlockShared& s, Context& ctx) {
  CHECK(s.runner, "[block] attn_half_kv needs an attention runner that keeps K/V");
  ln1_kv_forward(inp, w, a, c, s, ctx);
  s.runner->store_kv(s.layer, a, ctx);
}

void attn_half_recompute(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                         const BlockShared& s, Context& ctx) {
  rmsnorm_forward(a.ln1, a.rstd1, inp, w.ln1, float(c.rms_norm_eps), ctx);
  copy_tensor(a.x2, inp, ctx);
  linear_fwd(a.x2, a.att, w.wo, w.lora.o, s, ctx, /*acc=*/true);
}

namespace {
// The MLP rows of a, cut to the m rows of one tile.
struct MlpTile {
  Tensor ln2, rstd2, gate, up, hmlp;
};
MlpTile mlp_tile_of(const BlockActs& a, int64_t m) {
  return {a.ln2.slice0(0, m), a.rstd2.slice0(0, m), a.gate.slice0(0, m), a.up.slice0(0, m),
          a.hmlp.slice0(0, m)};
}
void mlp_tile_forward(const MlpTile& t, Tensor x2, const LayerParams& w, const LlamaConfig& c,
                      const BlockShared& s, Context& ctx) {
  rmsnorm_forward(t.ln2, t.rstd2, x2, w.ln2, float(c.rms_norm_eps), ctx);
  linear_fwd(t.gate, t.ln2, w.wgate, w.lora.gate, s, ctx);
  linear_fwd(t.up, t.ln2, w.wup, w.lora.up, s, ctx);
  swiglu_forward(t.hmlp, t.gate, t.up, ctx);
}
}  // namespace

void mlp_half_forward(Tensor out, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                      const BlockShared& s, Context& ctx) {
  const int64_t N = a.x2.dim(0), M = a.mlp_tile();
  copy_tensor(out, a.x2, ctx);
  for (int64_t r0 = 0; r0 < N; r0 += M) {
    const int64_t m = std::min(M, N - r0);
    const MlpTile t = mlp_tile_of(a, m);
    mlp_tile_forward(t, a.x2.slice0(r0, m), w, c, s, ctx);
    linear_fwd(out.slice0(r0, m), t.hmlp, w.wdown, w.lora.down, s, ctx, /*acc=*/true);
  }
}

void mlp_half_backward(Tensor dx, const LayerParams& w, const LayerParams& dw, const BlockActs& a,
                       const BlockGrads& g, const LlamaConfig& c, const BlockShared& s, Context& ctx) {
  const int64_t N = a.x2.dim(0), M = a.mlp_tile();
  for (int64_t r0 = 0; r0 < N; r0 += M) {
    const int64_t m = std::min(M, N - r0);
    const MlpTile t = mlp_tile_of(a, m);
    const Tensor x2 = a.x2.slice0(r0, m), d = dx.slice0(r0, m), dln = g.dln.slice0(0, m);
    if (M < N) mlp_tile_forward(t, x2, w, c, s, ctx);  // tiled: nothing was kept
    // d holds d(out); the residual passes it to x2 unchanged.
    // hmlp := d(hmlp), after dW used it
    linear_bwd(t.hmlp, dw.wdown, d, t.hmlp, w.wdown, w.lora.down, dw.lora.down, s, ctx);
    swiglu_backward(t.gate, t.up, t.hmlp, t.gate, t.up, ctx);  // gate, up := their gradients
    linear_bwd(dln, dw.wgate, t.gate, t.ln2, w.wgate, w.lora.gate, dw.lora.gate, s, ctx);
    linear_bwd(dln, dw.wup, t.up, t.ln2, w.wup, w.lora.up, dw.lora.up, s, ctx, /*acc=*/true);
    rmsnorm_backward(d, dw.ln2, dln, x2, w.ln2, t.rstd2, ctx, /*accumulate=*/true);  // d = d(x2)
  }
}

void attn_half_backward(Tensor dx, Tensor inp, const LayerParams& w, const LayerParams& dw,
                        const BlockActs& a, const BlockGrads& g, const LlamaConfig& c, const BlockShared& s,
                        Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
  linear_bwd(g.datt, dw.wo, dx, a.att, w.wo, w.lora.o, dw.lora.o, s, ctx);
  if (s.runner)
    s.runner->backward(s.layer, a, g, ctx);
  else
    attention_backward(heads4(g.dq, s, NH, HS), heads4(g.dk, s, NKV, HS), heads4(g.dv, s, NKV, HS),
                       heads4(g.datt, s, NH, HS), heads4(a.q, s, NH, HS), heads4(a.k, s, NKV, HS),
                       heads4(a.v, s, NKV, HS), heads4(a.att, s, NH, HS), a.lse, s.attn, ctx);
  rope_backward(heads3(g.dq, NH, HS), heads3(g.dq, NH, HS), s.pos, s.cos, s.sin, ctx);
  rope_backward(heads3(g.dk, NKV, HS), heads3(g.dk, NKV, HS), s.pos, s.cos, s.sin, ctx);
  linear_bwd(g.dln, dw.wq, g.dq, a.ln1, w.wq, w.lora.q, dw.lora.q, s, ctx);
  linear_bwd(g.dln, dw.wk, g.dk, a.ln1, w.wk, w.lora.k, dw.lora.k, s, ctx, true);
  linear_bwd(g.dln, dw.wv, g.dv, a.ln1, w.wv, w.lora.v, dw.lora.v, s, ctx, true);
  rmsnorm_backward(dx, dw.ln1, g.dln, inp, w.ln1, a.rstd1, ctx, true);  // dx = d(inp)
}

void gather_suffix(Tensor dst, Tensor src, int64_t B, int64_t T, int64_t S, Context& ctx) {
  for (int64_t b = 0; b < B; b++) copy_tensor(dst.slice0(b * S, S), src.slice0(b * T + T - S, S), ctx);
}

void add_suffix(Tensor dst, Tensor src, int64_t B, int64_t T, int64_t S, Context& ctx) {
  for (int64_t b = 0; b < B; b++) {
    const Tensor d = dst.slice0(b * T + T - S, S);
    add_forward(d, d, src.slice0(b * S, S), ctx);
  }
}

BlockActs suffix_acts(const BlockActs& a, const LlamaConfig& c, const BlockShared& s, const SuffixRows& r) {
  const int64_t Ms = s.B * r.S, NH = c.num_attention_heads;
  CHECK(r.S >= 1 && r.S <= s.T, "[block] a suffix of ", r.S, " rows of ", s.T);
  BlockActs o = a;
  o.q = a.q.slice0(0, Ms), o.att = a.att.slice0(0, Ms), o.x2 = a.x2.slice0(0, Ms);
  o.lse = a.lse.view({s.B * NH * s.T}).slice0(0, s.B * NH * r.S).view({s.B, NH, r.S});
  return o;
}

namespace {
AttentionParams suffix_params(const BlockShared& s, const SuffixRows& r) {
  AttentionParams p = s.attn;
  p.q_offset = s.T - r.S;  // query i of the suffix is at row T - S + i; keys are all T rows
  p.q_doc = r.q_doc;
  return p;
}
Tensor suffix4(Tensor t, const BlockShared& s, const SuffixRows& r, int64_t H, int64_t HS) {
  return t.view({s.B, r.S, H, HS});
}
}  // namespace

void attn_half_forward_suffix(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                              const BlockShared& s, const SuffixRows& r, Context& ctx) {
  CHECK(!s.runner && !s.k_cache.defined(), "[block] the suffix pass runs its own attention");
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
  const BlockActs sa = suffix_acts(a, c, s, r);
  ln1_kv_forward(inp, w, a, c, s, ctx);  // every row's keys and values
  // the suffix: q from its ln1 rows (gathered into x2, free until the residual)
  gather_suffix(sa.x2, a.ln1, s.B, s.T, r.S, ctx);
  linear_fwd(sa.q, sa.x2, w.wq, w.lora.q, s, ctx);
  rope_forward(heads3(sa.q, NH, HS), heads3(sa.q, NH, HS), r.pos, s.cos, s.sin, ctx);
  attention_forward(suffix4(sa.att, s, r, NH, HS), sa.lse, suffix4(sa.q, s, r, NH, HS),
                    heads4(a.k, s, NKV, HS), heads4(a.v, s, NKV, HS), suffix_params(s, r), ctx);
  gather_suffix(sa.x2, inp, s.B, s.T, r.S, ctx);
  linear_fwd(sa.x2, sa.att, w.wo, w.lora.o, s, ctx, /*acc=*/true);
}

void attn_half_backward_suffix(Tensor dx, Tensor keep, Tensor inp, const LayerParams& w,
                               const LayerParams& dw, const BlockActs& a, const BlockGrads& g,
                               const LlamaConfig& c, const BlockShared& s, const SuffixRows& r,
                               Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim, Ms = s.B * r.S;
  const BlockActs sa = suffix_acts(a, c, s, r);
  const Tensor dS = dx.slice0(0, Ms), datt = g.datt.slice0(0, Ms), dq = g.dq.slice0(0, Ms);
  copy_tensor(keep, dS, ctx);  // the residual's share of d(inp), added at the end
  linear_bwd(datt, dw.wo, dS, sa.att, w.wo, w.lora.o, dw.lora.o, s, ctx);
  attention_backward(suffix4(dq, s, r, NH, HS), heads4(g.dk, s, NKV, HS), heads4(g.dv, s, NKV, HS),
                     suffix4(datt, s, r, NH, HS), suffix4(sa.q, s, r, NH, HS), heads4(a.k, s, NKV, HS),
                     heads4(a.v, s, NKV, HS), suffix4(sa.att, s, r, NH, HS), sa.lse, suffix_params(s, r),
                     ctx);
  rope_backward(heads3(dq, NH, HS), heads3(dq, NH, HS), r.pos, s.cos, s.sin, ctx);
  rope_backward(heads3(g.dk, NKV, HS), heads3(g.dk, NKV, HS), s.pos, s.cos, s.sin, ctx);
  // d(ln1): every row from k and v, the suffix rows also from q (its ln1 rows gathered into x2 again)
  linear_bwd(g.dln, dw.wk, g.dk, a.ln1, w.wk, w.lora.k, dw.lora.k, s, ctx);
  linear_bwd(g.dln, dw.wv, g.dv, a.ln1, w.wv, w.lora.v, dw.lora.v, s, ctx, true);
  gather_suffix(sa.x2, a.ln1, s.B, s.T, r.S, ctx);
  linear_bwd(dS, dw.wq, dq, sa.x2, w.wq, w.lora.q, dw.lora.q, s, ctx);
  add_suffix(g.dln, dS, s.B, s.T, r.S, ctx);
  rmsnorm_backward(dx, dw.ln1, g.dln, inp, w.ln1, a.rstd1, ctx);  // dx = d(inp) through ln1
  add_suffix(dx, keep, s.B, s.T, r.S, ctx);
}

void block_forward(Tensor out, Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                   const BlockShared& s, Context& ctx) {
  attn_half_forward(inp, w, a, c, s, ctx);
  mlp_half_forward(out, w, a, c, s, ctx);
}

void block_backward(Tensor dx, Tensor inp, const LayerParams& w, const LayerParams& dw, const BlockActs& a,
                    const BlockGrads& g, const LlamaConfig& c, const BlockShared& s, Context& ctx) {
  mlp_half_backward(dx, w, dw, a, g, c, s, ctx);
  attn_half_backward(dx, inp, w, dw, a, g, c, s, ctx);
}

}  // namespace longctx
