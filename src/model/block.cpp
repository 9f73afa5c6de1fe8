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
  std::vector<ActSpec> t = {
      {"ln1", {N, C}}, {"rstd1", {N}}, {"q", {N, Cq}}, {"k", {N, Ckv}}, {"v", {N, Ckv}}};
  if (c.qk_norm()) {  // the norms' inputs and 1/rms, for their backward
    t.push_back({"qraw", {N, Cq}});
    t.push_back({"kraw", {N, Ckv}});
    t.push_back({"rstdq", {N * c.num_attention_heads}});
    t.push_back({"rstdk", {N * c.num_key_value_heads}});
  }
  for (const ActSpec& a : std::vector<ActSpec>{{"att", {N, Cq}},
                                               {"lse", {B, c.num_attention_heads, T}},
                                               {"x2", {N, C}},
                                               {"ln2", {M, C}},
                                               {"rstd2", {M}},
                                               {"gate", {M, F}},
                                               {"up", {M, F}},
                                               {"hmlp", {M, F}}})
    t.push_back(a);
  return t;
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
  auto opt = [&](const char* name) {
    Tensor t = kept.get(name);
    return t.defined() ? t : scratch.get(name);
  };
  auto get = [&](const char* name) {
    const Tensor t = opt(name);
    CHECK(t.defined(), "[block] no activation row named '", name, "'");
    return t;
  };
  BlockActs a;
  a.ln1 = get("ln1"), a.rstd1 = get("rstd1"), a.q = get("q"), a.k = get("k"), a.v = get("v");
  a.qraw = opt("qraw"), a.kraw = opt("kraw"), a.rstdq = opt("rstdq"), a.rstdk = opt("rstdk");
  a.att = get("att"), a.lse = get("lse"), a.x2 = get("x2");
  a.ln2 = get("ln2"), a.rstd2 = get("rstd2"), a.gate = get("gate"), a.up = get("up"), a.hmlp = get("hmlp");
  return a;
}

BlockActs bind_acts(const ActBuffer& b) { return bind_acts(b, b); }

BlockGrads bind_grads(const ActBuffer& b) {
  return {b.get("datt"), b.get("dq"), b.get("dk"), b.get("dv"), b.get("dln")};
}

namespace {
// The first n rows of an (N, r) LoRA scratch.
Tensor rows_of(const Tensor& t, int64_t n) { return t.slice0(0, n); }

// y (n, OC) = (or += when acc) x W^T + b + s (x A^T) B^T; b may be undefined (no bias).
void linear_fwd(Tensor y, Tensor x, Tensor W, Tensor b, const LoraPair& l, const BlockShared& s, Context& ctx,
                bool acc = false) {
  matmul_forward(y, x, W, ctx, acc);
  if (b.defined()) bias_add_forward(y, b, ctx);
  if (!l.A.defined()) return;
  const Tensor u = rows_of(s.lora_u, x.dim(0));
  matmul_forward(u, x, l.A, ctx);
  scale_inplace(u, s.lora_scale, ctx);
  matmul_forward(y, u, l.B, ctx, /*accumulate=*/true);
}

// dW += dy^T x, db += the rows of dy, dx = (or += when acc) dy W, and the adapters' share: dA, dB +=,
// dx += s (dy B) A. Every use of x comes before dx is written (dx may alias x). Undefined dW, db: frozen.
void linear_bwd(Tensor dx, Tensor dW, Tensor db, Tensor dy, Tensor x, Tensor W, const LoraPair& l,
                const LoraPair& dl, const BlockShared& s, Context& ctx, bool acc = false) {
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
  if (db.defined()) bias_add_backward(db, dy, ctx);
  if (dx.defined()) {
    matmul_backward(dx, Tensor(), dy, x, W, ctx, acc);
    if (l.A.defined()) matmul_backward(dx, Tensor(), g, x, l.A, ctx, /*accumulate=*/true);
  }
}

// (N, H*HS) viewed as (N, H, HS) for rope, or (B, T, H, HS) for attention.
Tensor heads3(Tensor t, int64_t H, int64_t HS) { return t.view({t.dim(0), H, HS}); }
Tensor heads4(Tensor t, const BlockShared& s, int64_t H, int64_t HS) { return t.view({s.B, s.T, H, HS}); }

// The attention of block s.layer: the step's mask, and the block's sliding window.
AttentionParams attn_params(const LlamaConfig& c, const BlockShared& s) {
  AttentionParams p = s.attn;
  p.window = c.window(s.layer);
  return p;
}

// One head-split projection of the attention (q or k), on n rows:
//   y (n, H*HS) = rope(norm(x W^T + b))
// where norm is the per-head RMSNorm of qwen3 (q_norm / k_norm), absent for
// the others; raw (n, H*HS) and rstd (n*H) keep its input and 1/rms.
struct HeadProj {
  Tensor W, b, norm;
  const LoraPair* lora;
  int64_t H;
};
HeadProj q_proj(const LayerParams& w, const LlamaConfig& c) {
  return {w.wq, w.bq, w.q_norm, &w.lora.q, c.num_attention_heads};
}
HeadProj k_proj(const LayerParams& w, const LlamaConfig& c) {
  return {w.wk, w.bk, w.k_norm, &w.lora.k, c.num_key_value_heads};
}

Tensor per_head(Tensor t, int64_t H, int64_t HS) { return t.view({t.dim(0) * H, HS}); }  // (n*H, HS)

void head_proj_forward(Tensor y, Tensor raw, Tensor rstd, Tensor x, const HeadProj& p, Tensor pos,
                       const LlamaConfig& c, const BlockShared& s, Context& ctx) {
  const int64_t HS = c.head_dim;
  if (!p.norm.defined()) {
    linear_fwd(y, x, p.W, p.b, *p.lora, s, ctx);
  } else {
    linear_fwd(raw, x, p.W, p.b, *p.lora, s, ctx);
    rmsnorm_forward(per_head(y, p.H, HS), rstd, per_head(raw, p.H, HS), p.norm, float(c.rms_norm_eps), ctx);
  }
  rope_forward(heads3(y, p.H, HS), heads3(y, p.H, HS), pos, s.cos, s.sin, ctx);
}

// dy (n, H*HS): in, d(y); out, clobbered. dx (n, C) = (or += when acc) d(x); scratch (n, H*HS) holds
// d(raw) when normed. dp: the gradients of W, b, norm and the adapters (undefined: frozen).
void head_proj_backward(Tensor dx, Tensor dy, Tensor scratch, Tensor x, Tensor raw, Tensor rstd,
                        const HeadProj& p, const HeadProj& dp, Tensor pos, const LlamaConfig& c,
                        const BlockShared& s, Context& ctx, bool acc) {
  const int64_t HS = c.head_dim;
  rope_backward(heads3(dy, p.H, HS), heads3(dy, p.H, HS), pos, s.cos, s.sin, ctx);
  Tensor dlin = dy;
  if (p.norm.defined()) {
    rmsnorm_backward(per_head(scratch, p.H, HS), dp.norm, per_head(dy, p.H, HS), per_head(raw, p.H, HS),
                     p.norm, rstd, ctx);
    dlin = scratch;
  }
  linear_bwd(dx, dp.W, dp.b, dlin, x, p.W, *p.lora, *dp.lora, s, ctx, acc);
}

// The first n*cols floats of t as (n, cols): backward scratch borrowed from a larger free buffer.
Tensor borrow(Tensor t, int64_t n, int64_t cols) {
  CHECK(t.numel() >= n * cols, "[block] scratch of ", t.numel(), " floats for ", n, " x ", cols);
  return t.view({t.numel()}).slice0(0, n * cols).view({n, cols});
}
}  // namespace

namespace {
// a.ln1, a.rstd1 from inp; a.k (after norm and rope), a.v from a.ln1: every row's keys and values.
void ln1_kv_forward(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                    const BlockShared& s, Context& ctx) {
  rmsnorm_forward(a.ln1, a.rstd1, inp, w.ln1, float(c.rms_norm_eps), ctx);
  head_proj_forward(a.k, a.kraw, a.rstdk, a.ln1, k_proj(w, c), s.pos, c, s, ctx);
  linear_fwd(a.v, a.ln1, w.wv, w.bv, w.lora.v, s, ctx);
}

// d(ln1) of every row from dk and dv, into g.dln (= or += when acc); g.datt is free scratch by now.
void kv_backward(const LayerParams& w, const LayerParams& dw, const BlockActs& a, const BlockGrads& g,
                 const LlamaConfig& c, const BlockShared& s, Context& ctx, bool acc) {
  const Tensor scratch = borrow(g.datt, g.dk.dim(0), c.kv_dim());
  head_proj_backward(g.dln, g.dk, scratch, a.ln1, a.kraw, a.rstdk, k_proj(w, c), k_proj(dw, c), s.pos, c, s,
                     ctx, acc);
  linear_bwd(g.dln, dw.wv, dw.bv, g.dv, a.ln1, w.wv, w.lora.v, dw.lora.v, s, ctx, /*acc=*/true);
}
}  // namespace

void attn_half_forward(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                       const BlockShared& s, Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
  // x2 = inp + o_proj(attn(rope(norm(q)), rope(norm(k)), v))
  ln1_kv_forward(inp, w, a, c, s, ctx);
  head_proj_forward(a.q, a.qraw, a.rstdq, a.ln1, q_proj(w, c), s.pos, c, s, ctx);
  if (s.runner) {
    s.runner->forward(s.layer, a, ctx);
  } else if (s.k_cache.defined()) {
    CHECK(s.B == 1 && s.cache_len + s.T <= s.k_cache.dim(0), "[block] KV cache of ", s.k_cache.dim(0),
          " rows cannot take ", s.T, " more after ", s.cache_len, " (batch ", s.B, ")");
    const int64_t Tk = s.cache_len + s.T;
    copy_tensor(s.k_cache.slice0(s.cache_len, s.T), a.k, ctx);
    copy_tensor(s.v_cache.slice0(s.cache_len, s.T), a.v, ctx);
    AttentionParams p = attn_params(c, s);
    p.q_offset = s.cache_len;
    attention_forward(heads4(a.att, s, NH, HS), a.lse, heads4(a.q, s, NH, HS),
                      s.k_cache.slice0(0, Tk).view({1, Tk, NKV, HS}),
                      s.v_cache.slice0(0, Tk).view({1, Tk, NKV, HS}), p, ctx);
  } else {
    attention_forward(heads4(a.att, s, NH, HS), a.lse, heads4(a.q, s, NH, HS), heads4(a.k, s, NKV, HS),
                      heads4(a.v, s, NKV, HS), attn_params(c, s), ctx);
  }
  copy_tensor(a.x2, inp, ctx);
  linear_fwd(a.x2, a.att, w.wo, w.bo, w.lora.o, s, ctx, /*acc=*/true);
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
  linear_fwd(a.x2, a.att, w.wo, w.bo, w.lora.o, s, ctx, /*acc=*/true);
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
  linear_fwd(t.gate, t.ln2, w.wgate, w.bgate, w.lora.gate, s, ctx);
  linear_fwd(t.up, t.ln2, w.wup, w.bup, w.lora.up, s, ctx);
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
    linear_fwd(out.slice0(r0, m), t.hmlp, w.wdown, w.bdown, w.lora.down, s, ctx, /*acc=*/true);
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
    linear_bwd(t.hmlp, dw.wdown, dw.bdown, d, t.hmlp, w.wdown, w.lora.down, dw.lora.down, s, ctx);
    swiglu_backward(t.gate, t.up, t.hmlp, t.gate, t.up, ctx);  // gate, up := their gradients
    linear_bwd(dln, dw.wgate, dw.bgate, t.gate, t.ln2, w.wgate, w.lora.gate, dw.lora.gate, s, ctx);
    linear_bwd(dln, dw.wup, dw.bup, t.up, t.ln2, w.wup, w.lora.up, dw.lora.up, s, ctx, /*acc=*/true);
    rmsnorm_backward(d, dw.ln2, dln, x2, w.ln2, t.rstd2, ctx, /*accumulate=*/true);  // d = d(x2)
  }
}

void attn_half_backward(Tensor dx, Tensor inp, const LayerParams& w, const LayerParams& dw,
                        const BlockActs& a, const BlockGrads& g, const LlamaConfig& c, const BlockShared& s,
                        Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim;
  linear_bwd(g.datt, dw.wo, dw.bo, dx, a.att, w.wo, w.lora.o, dw.lora.o, s, ctx);
  if (s.runner)
    s.runner->backward(s.layer, a, g, ctx);
  else
    attention_backward(heads4(g.dq, s, NH, HS), heads4(g.dk, s, NKV, HS), heads4(g.dv, s, NKV, HS),
                       heads4(g.datt, s, NH, HS), heads4(a.q, s, NH, HS), heads4(a.k, s, NKV, HS),
                       heads4(a.v, s, NKV, HS), heads4(a.att, s, NH, HS), a.lse, attn_params(c, s), ctx);
  // g.datt is free from here: the q/k norms' backward scratch
  head_proj_backward(g.dln, g.dq, g.datt, a.ln1, a.qraw, a.rstdq, q_proj(w, c), q_proj(dw, c), s.pos, c, s,
                     ctx, /*acc=*/false);
  kv_backward(w, dw, a, g, c, s, ctx, /*acc=*/true);
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
  if (a.qraw.defined()) o.qraw = a.qraw.slice0(0, Ms), o.rstdq = a.rstdq.slice0(0, Ms * NH);
  o.lse = a.lse.view({s.B * NH * s.T}).slice0(0, s.B * NH * r.S).view({s.B, NH, r.S});
  return o;
}

namespace {
AttentionParams suffix_params(const LlamaConfig& c, const BlockShared& s, const SuffixRows& r) {
  AttentionParams p = attn_params(c, s);
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
  head_proj_forward(sa.q, sa.qraw, sa.rstdq, sa.x2, q_proj(w, c), r.pos, c, s, ctx);
  attention_forward(suffix4(sa.att, s, r, NH, HS), sa.lse, suffix4(sa.q, s, r, NH, HS),
                    heads4(a.k, s, NKV, HS), heads4(a.v, s, NKV, HS), suffix_params(c, s, r), ctx);
  gather_suffix(sa.x2, inp, s.B, s.T, r.S, ctx);
  linear_fwd(sa.x2, sa.att, w.wo, w.bo, w.lora.o, s, ctx, /*acc=*/true);
}

void attn_half_backward_suffix(Tensor dx, Tensor keep, Tensor inp, const LayerParams& w,
                               const LayerParams& dw, const BlockActs& a, const BlockGrads& g,
                               const LlamaConfig& c, const BlockShared& s, const SuffixRows& r,
                               Context& ctx) {
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HS = c.head_dim, Ms = s.B * r.S;
  const BlockActs sa = suffix_acts(a, c, s, r);
  const Tensor dS = dx.slice0(0, Ms), datt = g.datt.slice0(0, Ms), dq = g.dq.slice0(0, Ms);
  copy_tensor(keep, dS, ctx);  // the residual's share of d(inp), added at the end
  linear_bwd(datt, dw.wo, dw.bo, dS, sa.att, w.wo, w.lora.o, dw.lora.o, s, ctx);
  attention_backward(suffix4(dq, s, r, NH, HS), heads4(g.dk, s, NKV, HS), heads4(g.dv, s, NKV, HS),
                     suffix4(datt, s, r, NH, HS), suffix4(sa.q, s, r, NH, HS), heads4(a.k, s, NKV, HS),
                     heads4(a.v, s, NKV, HS), suffix4(sa.att, s, r, NH, HS), sa.lse, suffix_params(c, s, r),
                     ctx);
  // d(ln1): every row from k and v, the suffix rows also from q (its ln1 rows gathered into x2 again)
  kv_backward(w, dw, a, g, c, s, ctx, /*acc=*/false);
  gather_suffix(sa.x2, a.ln1, s.B, s.T, r.S, ctx);
  head_proj_backward(dS, dq, datt, sa.x2, sa.qraw, sa.rstdq, q_proj(w, c), q_proj(dw, c), r.pos, c, s, ctx,
                     /*acc=*/false);
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
