// One Llama-family decoder block (llama, mistral, qwen2, qwen3: optional
// biases, per-head q/k norms, a sliding window), forward and backward, over N = B*T tokens.
// Sizes of every activation come from one table (block_act_table) so that a
// recompute policy is a choice of which rows to keep.
#pragma once
#include <vector>

#include "core/context.h"
#include "model/config.h"
#include "model/params.h"
#include "ops/attention.h"

namespace longctx {

struct ActSpec {
  const char* name;
  Shape shape;
};

// Forward activations of one block (kept for its backward, or recomputed).
// M is the MLP tile: N when the MLP runs whole, fewer rows when it is tiled
// (then the MLP rows are scratch for one tile and never kept).
struct BlockActs {
  Tensor ln1, rstd1;      // (N, C), (N)
  Tensor q, k, v;         // (N, Cq), (N, Ckv), (N, Ckv) after rope
  Tensor qraw, kraw;      // (N, Cq), (N, Ckv): q and k before their per-head norms (qk_norm only)
  Tensor rstdq, rstdk;    // (N * NH), (N * NKV): those norms' 1/rms (qk_norm only)
  Tensor att, lse;        // (N, Cq), (B, NH, T)
  Tensor x2;              // (N, C) residual after attention
  Tensor ln2, rstd2;      // (M, C), (M)
  Tensor gate, up, hmlp;  // (M, F) each; hmlp = silu(gate) * up
  int64_t mlp_tile() const { return ln2.dim(0); }
};
// Scratch of one block's backward.
struct BlockGrads {
  Tensor datt, dq;  // (N, Cq)
  Tensor dk, dv;    // (N, Ckv)
  Tensor dln;       // (N, C)
};

// mlp_tile: rows of the MLP rows (0: all N = B*T).
std::vector<ActSpec> block_act_table(const LlamaConfig& c, int64_t B, int64_t T, int64_t mlp_tile = 0);
std::vector<ActSpec> block_grad_table(const LlamaConfig& c, int64_t B, int64_t T);
int64_t table_bytes(const std::vector<ActSpec>& t);  // fp32, each row 64-byte aligned

// Owns one block's activations or backward scratch, carved from one buffer.
class ActBuffer {
 public:
  ActBuffer(const std::vector<ActSpec>& table, Memory& mem, Tier tier, Tag tag);
  Tensor get(const char* name) const;  // undefined if the table has no such row
  const Tensor& all() const { return storage_.t(); }

 private:
  std::vector<ActSpec> table_;
  std::vector<Tensor> views_;
  Buffer storage_;
};
BlockActs bind_acts(const ActBuffer& b);
// Rows from `kept` where it has them, the rest from `scratch`.
BlockActs bind_acts(const ActBuffer& kept, const ActBuffer& scratch);
BlockGrads bind_grads(const ActBuffer& b);

// Attention done elsewhere than on the block's own q, k, v: chunked training
// attends to a KV cache held in pages on another tier. forward fills a.att and
// a.lse from a.q, a.k, a.v; backward fills g.dq, g.dk, g.dv from g.datt.
class AttentionRunner {
 public:
  virtual ~AttentionRunner() = default;
  virtual void forward(int64_t layer, const BlockActs& a, Context& ctx) = 0;
  virtual void backward(int64_t layer, const BlockActs& a, const BlockGrads& g, Context& ctx) = 0;
  // Keeps a.k, a.v (this block's K/V) for later attention, attending to nothing now.
  virtual void store_kv(int64_t layer, const BlockActs& a, Context& ctx);
};

// What every block of a step shares: positions, rope tables, attention setup.
struct BlockShared {
  int64_t B = 0, T = 0;
  Tensor pos;       // (N) I32 absolute positions
  Tensor cos, sin;  // (P, HS/2)
  AttentionParams attn;
  // KV cache (B = 1): when set, this call's K/V rows are written at
  // [cache_len, cache_len + T) and attention covers keys [0, cache_len + T),
  // with queries at absolute positions from cache_len.
  Tensor k_cache, v_cache;  // (Tmax, Ckv)
  int64_t cache_len = 0;
  AttentionRunner* runner = nullptr;  // set: attention goes through it
  int64_t layer = 0;                  // the block being run: its attention window, the runner
  float lora_scale = 0;               // alpha / r
  Tensor lora_u, lora_g;              // (N, r) scratch of the adapters
};

// The two halves of a block. Attention: a.ln1 .. a.x2 from inp (N, C).
void attn_half_forward(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                       const BlockShared& s, Context& ctx);
// Only K and V (after rope) from inp, handed to s.runner->store_kv: what the
// last block contributes to a chunk-wise pass that fills KV caches.
void attn_half_kv(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                  const BlockShared& s, Context& ctx);
// Selective recompute: ln1, rstd1 and x2 again from inp and the kept att.
void attn_half_recompute(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                         const BlockShared& s, Context& ctx);
// MLP: out (N, C) = x2 + down(silu(gate(ln2(x2))) * up(ln2(x2))), a.mlp_tile()
// rows at a time; the MLP rows of a hold the result only when untiled.
void mlp_half_forward(Tensor out, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                      const BlockShared& s, Context& ctx);
// dx: in d(out), out d(x2). Tiled: each tile's MLP rows are recomputed first.
void mlp_half_backward(Tensor dx, const LayerParams& w, const LayerParams& dw, const BlockActs& a,
                       const BlockGrads& g, const LlamaConfig& c, const BlockShared& s, Context& ctx);
// dx: in d(x2), out d(inp).
void attn_half_backward(Tensor dx, Tensor inp, const LayerParams& w, const LayerParams& dw,
                        const BlockActs& a, const BlockGrads& g, const LlamaConfig& c, const BlockShared& s,
                        Context& ctx);

// The last block when only the last S rows of each of the B rows need its
// output (the labels before them are all ignored): keys and values come from
// all N = B*T rows, queries and everything after them from the Ms = B*S rows
// of the suffix, so the unlabeled rows skip the queries, attention, output
// projection, MLP and LM head. Exact: the same values as the whole block on
// those rows. pos (Ms) I32: the suffix rows' rope rows; q_doc (B, S) I32 or
// undefined (no documents).
struct SuffixRows {
  int64_t S = 0;
  Tensor pos, q_doc;
};
// dst (B*S, X) = the last S of every T rows of src (B*T, X); add_suffix: dst (B*T, X) += src (B*S, X) there.
void gather_suffix(Tensor dst, Tensor src, int64_t B, int64_t T, int64_t S, Context& ctx);
void add_suffix(Tensor dst, Tensor src, int64_t B, int64_t T, int64_t S, Context& ctx);
// a with q, att, lse and x2 cut to the suffix (Ms rows; lse (B, NH, S)); the MLP rows as they are.
BlockActs suffix_acts(const BlockActs& a, const LlamaConfig& c, const BlockShared& s, const SuffixRows& r);
// a.ln1, a.rstd1, a.k, a.v on all N rows; the suffix rows of a.q, a.att, a.lse, a.x2.
void attn_half_forward_suffix(Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                              const BlockShared& s, const SuffixRows& r, Context& ctx);
// dx (N, C): in, rows [0, Ms) hold d(x2) of the suffix; out, d(inp) of all N rows.
// keep (Ms, C): scratch that holds the residual's share meanwhile.
void attn_half_backward_suffix(Tensor dx, Tensor keep, Tensor inp, const LayerParams& w,
                               const LayerParams& dw, const BlockActs& a, const BlockGrads& g,
                               const LlamaConfig& c, const BlockShared& s, const SuffixRows& r, Context& ctx);

// out (N, C) = block(inp (N, C)); fills a.
void block_forward(Tensor out, Tensor inp, const LayerParams& w, const BlockActs& a, const LlamaConfig& c,
                   const BlockShared& s, Context& ctx);
// dx (N, C): in, d(loss)/d(out); out, d(loss)/d(inp). dw +=. a from block_forward on inp.
void block_backward(Tensor dx, Tensor inp, const LayerParams& w, const LayerParams& dw, const BlockActs& a,
                    const BlockGrads& g, const LlamaConfig& c, const BlockShared& s, Context& ctx);

}  // namespace longctx
