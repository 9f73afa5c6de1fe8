#include "strategy/cluster_model.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "model/params.h"
#include "parallel/ulysses.h"

namespace longctx {

namespace {

int64_t local_tokens(int64_t T, CpKind kind, int P) {
  const int64_t unit = kind == CpKind::zigzag ? 2 * P : P;
  return (T + unit - 1) / unit * unit / P;
}

int recomputes(const Plan& p) { return p.recompute == Recompute::full ? 1 : 0; }

// Hybrid's ring runs on the head-sharded chunk of a Ulysses group of U ranks.
LlamaConfig hybrid_ring_config(const LlamaConfig& c, int U) {
  LlamaConfig h = c;
  h.num_attention_heads = c.num_attention_heads / U;
  h.num_key_value_heads = UlyssesAttention::kv_heads_per_rank(c, U);  // the group's KV heads per rank
  return h;
}

// The CP runner's own buffers (fp32 elements), as UlyssesAttention / RingAttention allocate them, less their
// document ids (runner_doc_bytes).
int64_t runner_floats(const LlamaConfig& c, int64_t B, int64_t Tl, CpKind kind, int P, int U = 1) {
  if (kind == CpKind::hybrid)
    return runner_floats(c, B, Tl, CpKind::ulysses, U) +
           runner_floats(hybrid_ring_config(c, U), B, Tl * U, CpKind::ring, P / U);
  const int64_t NH = c.num_attention_heads, HS = c.head_dim, T = Tl * P;
  if (kind == CpKind::ulysses ||
      kind == CpKind::upipe) {  // UPipe: one query head (and its KV copy) at a time
    const int64_t NHr = kind == CpKind::upipe ? 1 : NH / P;
    const int64_t m = kind == CpKind::upipe ? 1 : UlyssesAttention::kv_heads_per_rank(c, P);
    return 4 * B * T * NHr * HS + 4 * B * T * m * HS + B * NHr * T + 2 * P * B * Tl * std::max(NHr, m) * HS;
  }
  const int64_t L = kind == CpKind::zigzag ? Tl / 2 : Tl, Ckv = c.kv_dim(), Cq = c.q_dim();
  return 8 * B * Tl * Ckv + 5 * B * L * Cq + 4 * B * L * Ckv + 2 * B * NH * L;
}

// Their document ids (int32, whatever the precision): Ulysses' (B, T) of the whole sequence, ring's every
// rank's segments (P, segments, B, segment), as many; hybrid both (its Ulysses group's T is U * Tl).
int64_t runner_doc_bytes(int64_t B, int64_t Tl, CpKind kind, int P, int U = 1) {
  if (kind == CpKind::hybrid) return 4 * B * Tl * U + 4 * B * Tl * P;
  return 4 * B * Tl * P;
}

// The earlier K/V pages the blocks' chunks read in a step's passes (none wholly outside a block's sliding
// window: KvPages::first_page): in every pass over all blocks (`all`), and in the first pass (`first`; SeCO's
// skips the last block's attention).
struct PageReads {
  double all = 0, first = 0;
};
PageReads page_reads(const LlamaConfig& c, int64_t k, int64_t Tc, int first_pass) {
  PageReads r;
  for (int64_t l = 0; l < c.num_hidden_layers; l++) {
    const int64_t w = c.window(l), reach = w > 0 ? (w + Tc - 2) / Tc : k;
    double n = 0;
    for (int64_t j = 0; j < k; j++) n += double(std::min(j, reach));
    r.all += n;
    if (first_pass == 2 || (first_pass == 1 && l + 1 < c.num_hidden_layers)) r.first += n;
  }
  return r;
}

}  // namespace

nlohmann::json RankPrediction::to_json() const {
  return {{"peak_bytes", mem.to_json()},
          {"compute_seconds", compute_s},
          {"comm_seconds", comm_s},
          {"step_seconds", step_s},
          {"comm_bytes", comm_bytes}};
}

double cp_bytes_per_step(const LlamaConfig& c, int64_t B, int64_t T, CpKind kind, int P, int R, int act_bytes,
                         int U, ChunkPasses ch) {
  if (P <= 1) return 0;
  if (kind == CpKind::hybrid) {  // the group's all-to-alls, then the ring of head-sharded K/V across groups
    const int64_t Tp = local_tokens(T, CpKind::ulysses, P) * P;
    return cp_bytes_per_step(c, B, Tp / (P / U), CpKind::ulysses, U, R, act_bytes, 1, ch) +
           cp_bytes_per_step(hybrid_ring_config(c, U), B, Tp, CpKind::ring, P / U, R, act_bytes, 1, ch);
  }
  const double Tl = double(local_tokens(T, kind, P)), L = double(c.num_hidden_layers);
  const double NH = double(c.num_attention_heads), HS = double(c.head_dim);
  const double Cq = double(c.q_dim()), Ckv = double(c.kv_dim());
  double floats = 0, kv_floats = 0;
  if (kind == CpKind::ulysses || kind == CpKind::upipe) {
    // K or V per token as sent to all P ranks, copies included (UPipe: a copy per query head)
    const int64_t m = UlyssesAttention::kv_heads_per_rank(c, P);
    const double KVe = (kind == CpKind::upipe ? NH : double(P * m)) * HS;
    const double fwd = 2 * Cq + 2 * KVe + NH, bwd = 4 * Cq + 4 * KVe + NH;
    const double first = ch.first == 1   ? (fwd * (L - 1) + 2 * KVe) / L  // the last block sends only K/V
                         : ch.first == 2 ? fwd
                                         : 0;
    floats =
        (double(P) - 1) / double(P) * double(B) * Tl * (ch.backward_share * ((1 + R) * fwd + bwd) + first);
    const int S = UlyssesAttention::kv_sharing_ranks(c, P);
    if (ch.chunks > 1 && S > 1) {  // shared K/V pages: gathered before each read, gradients reduce-scattered
      const int64_t k = ch.chunks, Tc = T / k;
      const double page = double(B) * double(Tc) * double(m) * HS;  // a page of this rank's KV heads
      // the first pass, then each rerun chunk reads its pages in the forward, in the recompute of `R`
      // forwards and in the backward, and scatters their gradients
      const PageReads n = page_reads(c, k, Tc, ch.first);
      kv_floats = 2 * (S - 1.0) / S * page * (n.first + n.all * ch.backward_share * (3 + R));
    }
  } else if (ch.chunks > 0) {  // ring with chunks: every chunk's and earlier page's K/V gathered from slices
    const int64_t k = ch.chunks, Tc = T / k;
    const double page = double(B) * double(Tc) * Ckv, part = (double(P) - 1) / double(P) * page;
    const PageReads n = page_reads(c, k, Tc, ch.first);
    // the chunk's own K/V: gathered in the first pass (SeCO's last block only stores its slice) and in each
    // rerun's forward, recompute and backward, whose gradients are reduce-scattered; pages the same way
    const double first_blocks = ch.first == 1 ? L - 1 : ch.first == 2 ? L : 0;
    kv_floats = 2 * part *
                (double(k) * (first_blocks + ch.backward_share * L * (3 + R)) + n.first +
                 n.all * ch.backward_share * (3 + R));
  } else {
    floats = 2 * double(B) * Tl * Ckv * ((1 + R) * (P - 1) + (P - 1) + P);
  }
  return floats * L * act_bytes + kv_floats * 4;  // (the engine gathers pages widened to fp32)
}

namespace {

// Chunks of a resolved chunked plan: the padded length and the passes.
ChunkPasses chunk_passes(const Plan& rp, int64_t T, int64_t* padded) {
  *padded = T;
  if (!rp.chunked()) return {};
  const int64_t k = (T + rp.chunk_size - 1) / rp.chunk_size;
  *padded = k * rp.chunk_size;
  const bool spaco = rp.chunk_mode == ChunkMode::spaco;
  return {spaco ? 2 : 1, spaco ? std::min(1.0, double(rp.chunk_budget) / double(k)) : 1.0, k};
}

}  // namespace

double cp_attention_bytes(const LlamaConfig& c, const Plan& p, int64_t B, int64_t T, CpKind kind,
                          const ClusterSpec& cl) {
  const Plan rp = p.chunked() && cl.ranks > 1 ? resolve_plan(p, c, B, T) : p;
  int64_t Tp = T;
  const ChunkPasses ch = cl.ranks > 1 ? chunk_passes(rp, T, &Tp) : ChunkPasses{};
  return cp_bytes_per_step(c, B, Tp, kind, cl.ranks, recomputes(p), cl.act_bytes,
                           kind == CpKind::hybrid ? cl.cp_ulysses : 1, ch);
}

RankPrediction predict_cp(const LlamaConfig& c, const Plan& plan, int64_t B, int64_t T, CpKind kind,
                          const ClusterSpec& cl, const MachineRates& r, Purpose why) {
  const int P = std::max(cl.ranks, 1);
  const int U = kind == CpKind::hybrid ? cl.cp_ulysses : 1;
  CHECK(kind != CpKind::hybrid || (U >= 1 && P % U == 0 && c.num_attention_heads % U == 0),
        "cp-kind hybrid: --cp-ulysses ", U, " must divide the ", P, " ranks and the ", c.num_attention_heads,
        " query heads");
  const bool a2a = kind == CpKind::ulysses || kind == CpKind::upipe;
  CHECK(!a2a || c.num_attention_heads % P == 0, "cp-kind ", cp_kind_name(kind), ": ", c.num_attention_heads,
        " query heads do not divide over ", P, " ranks");
  // chunks across ranks (ChunkedStep): each rank runs a 1/P slice of every chunk; Ulysses gives it the
  // whole chunk for NH/P heads and it keeps the K/V cache of those heads for the whole sequence; ring
  // gathers the chunk's K/V for all heads and it keeps its token slice of every page
  const bool chunked = plan.chunked() && P > 1;
  CHECK(!chunked || kind == CpKind::ulysses || kind == CpKind::ring || kind == CpKind::hybrid,
        "plan: chunk modes run across ranks with cp-kind ulysses, ring or hybrid, not ", cp_kind_name(kind));
  const bool slices = chunked && (kind == CpKind::ring || (kind == CpKind::hybrid && U < P));
  CHECK(!slices || U == 1 || UlyssesAttention::kv_sharing_ranks(c, U) == 1,
        "cp-kind hybrid with chunks: ", "--cp-ulysses ", U, " exceeds the ", c.num_key_value_heads,
        " KV heads");
  const Plan rp = chunked ? resolve_plan(plan, c, B, T) : plan;
  CHECK(!chunked || rp.chunk_size % P == 0, "plan: chunk size ", rp.chunk_size, " does not divide over ", P,
        " ranks of context parallelism");
  const int64_t Tl = chunked ? rp.chunk_size / P : P > 1 ? local_tokens(T, kind, P) : T;  // runner rows
  RankPrediction out;
  MemoryPrediction m;
  if (chunked) {
    Plan slice = rp;
    slice.chunk_size = Tl;
    m = predict_memory(c, slice, B, T, why);  // the block rows of a slice
    // the cache's heads: this rank's of whole chunks (Ulysses), all (ring) or this rank's in its group
    // (hybrid); the ranks that receive the same KV heads share their pages (ring: all, hybrid: the groups)
    const LlamaConfig hc = slices ? hybrid_ring_config(c, U) : hybrid_ring_config(c, P);
    Plan shared = rp;
    shared.kv_share = slices ? P / U : UlyssesAttention::kv_sharing_ranks(c, P);
    // the K/V cache's dtype is the engine's: bf16 with the GPU's bf16 math (kv_dtype auto), its gradients
    // fp32 unless the plan says bf16 (counted below as they are, not scaled with the activations)
    if (cl.act_bytes == 2) shared.bf16_attention = true;
    const MemoryPrediction kv = predict_memory(hc, shared, B, T, why);  // this rank's heads of whole chunks
    for (int t = 0; t < kNumTiers; t++)
      for (Tag tag : {Tag::kv_cache, Tag::kv_grad}) {
        const int64_t d = kv.tag[size_t(t)][size_t(tag)] - m.tag[size_t(t)][size_t(tag)];
        m.tag[size_t(t)][size_t(tag)] += d, m.tier[size_t(t)] += d;
      }
  } else {
    m = predict_memory(c, plan, B, Tl, why);
  }
  const size_t dev = size_t(Tier::device);
  const double s = double(cl.act_bytes) / 4.0;
  // activations and scratch scale with the precision; token ids do not
  for (int t = 0; t < kNumTiers; t++)
    for (int g = 0; g < kNumTags; g++) {
      const Tag tag = Tag(g);
      if (tag == Tag::weights || tag == Tag::grads || tag == Tag::optim || tag == Tag::data) continue;
      if (chunked && (tag == Tag::kv_cache || tag == Tag::kv_grad)) continue;  // in their own dtypes above
      m.tag[size_t(t)][size_t(g)] = int64_t(double(m.tag[size_t(t)][size_t(g)]) * s);
    }
  if (P > 1) {
    // (ring with chunks: the whole chunk's K/V and their gradients, fp32; hybrid: of the group's heads, and
    // the Ulysses runner's buffers)
    // (chunks run one sequence at a time)
    const int64_t Br = chunked ? 1 : B;
    if (slices)
      m.tag[dev][size_t(Tag::comm)] +=
          4 * rp.chunk_size * hybrid_ring_config(c, U).kv_dim() * 4 +
          (U > 1 ? int64_t(double(runner_floats(c, Br, Tl, CpKind::ulysses, U)) * 4 * s) +
                       runner_doc_bytes(Br, Tl, CpKind::ulysses, U)
                 : 0);
    else
      m.tag[dev][size_t(Tag::comm)] += int64_t(double(runner_floats(c, Br, Tl, kind, P, U)) * 4 * s) +
                                       runner_doc_bytes(Br, Tl, kind, P, U);
    if (why == Purpose::grad)
      m.tag[size_t(Tier::host)][size_t(Tag::data)] += 2 * B * (T - Tl) * 4;  // every rank reads all
  }
  // model state: n parameters, of which `trained` train (LoRA: the adapters)
  const double n = double(param_bytes(c)) / 4, lora = double(lora_param_bytes(c, plan.lora)) / 4;
  const double trained = plan.lora.enabled() ? lora : n;
  const bool bf16 = cl.act_bytes == 2, train = why == Purpose::train;
  double weights = n * cl.act_bytes + (plan.lora.enabled() ? lora * cl.act_bytes : 0);
  if (bf16 && train) weights += trained * 4;  // fp32 master copy of what trains
  double grads = trained * cl.act_bytes, optim = train ? 8 * trained : 0;
  // ZeRO 2-3 as ZeroShards runs them: this rank's part, plus one whole unit at a time (a block, the
  // embedding, or the final norm with the LM head, which when tied is the embedding). LoRA at stage 2
  // keeps the adapters' whole gradients (only their reduction is scattered); stage 3 refuses LoRA.
  const double embed = double(c.vocab_size) * double(c.hidden_size);
  const double outer = embed * (c.tie_word_embeddings ? 1 : 2) + double(c.hidden_size);
  const double block = (n - outer) / double(std::max<int64_t>(c.num_hidden_layers, 1));
  const double unit = std::max(block, embed + double(c.hidden_size));
  if (cl.zero >= 1) optim /= P;
  if (cl.zero >= 2 && !plan.lora.enabled()) grads = grads / P + unit * cl.act_bytes;
  if (cl.zero >= 3) weights = weights / P + unit * cl.act_bytes;
  m.tag[dev][size_t(Tag::weights)] = int64_t(weights);
  m.tag[dev][size_t(Tag::grads)] = int64_t(grads);
  m.tag[dev][size_t(Tag::optim)] = int64_t(optim);
  if (train && plan.optim_offload != Offload::none) {
    // offload_optimizer: this rank's moments on the host or the disk (split: the first on the host, the
    // second on the disk), streamed through two device slices (and host ones from the disk)
    const double slice =
        double(std::min<int64_t>(Plan::kOptimSlice, std::max<int64_t>(int64_t(optim / 8), 1)));
    const bool disk = plan.optim_offload == Offload::disk, split = disk && plan.optim_split;
    m.tag[dev][size_t(Tag::optim)] = int64_t(2 * slice * 4);
    m.tag[size_t(Tier::host)][size_t(Tag::optim)] = int64_t(!disk   ? optim
                                                            : split ? optim / 2 + slice * 4
                                                                    : 2 * slice * 4);
    m.tag[size_t(Tier::disk)][size_t(Tag::optim)] = int64_t(!disk ? 0 : split ? optim / 2 : optim);
  }
  for (int t = 0; t < kNumTiers; t++) {
    m.tier[size_t(t)] = 0;
    for (int g = 0; g < kNumTags; g++) m.tier[size_t(t)] += m.tag[size_t(t)][size_t(g)];
  }
  out.mem = m;

  // time: matmuls on T/P tokens, attention as the layout shares it
  TimePrediction local = predict_time(c, plan, B, chunked ? T : Tl, r);
  if (chunked) local.gemm_flops /= P, local.copy_s /= P;  // 1/P of every chunk's rows
  const double full_attn = 4.0 * double(B) * double(c.num_attention_heads) * double(c.head_dim) * double(T) *
                           (double(T) + 1) / 2 * double(c.num_hidden_layers);
  const int Rg = P / U;                                    // ring length (hybrid: across groups)
  const double share = P == 1 || slices         ? 1.0 / P  // (chunks: only a chunk's own page is causal)
                       : kind == CpKind::ring   ? double(2 * P - 1) / double(P) / double(P)
                       : kind == CpKind::hybrid ? double(2 * Rg - 1) / double(Rg) / double(Rg) / U
                                                : 1.0 / P;
  const double attn_exec = (3.5 + recomputes(plan)) * full_attn * share;
  out.compute_s = local.gemm_flops / (r.gemm_gflops * 1e9) + attn_exec / (r.attn_gflops * 1e9);
  const bool one_node = P <= cl.ranks_per_node;
  const double bw = (one_node ? cl.intra_gbps : cl.inter_gbps) * 1e9;
  const double attn_bytes = cp_attention_bytes(c, plan, B, T, kind, cl);
  // ZeRO as ZeroShards sends: stages 0-1 all-reduce the gradients once per step, 1-2 all-gather the
  // updated parts after it. Stages 2-3 (full training) work per pass over the blocks (the step, or
  // with chunks each chunk's rerun, and at 3 the chunks' first pass too): each unit's gradients are
  // reduce-scattered when its backward ends and (3) its weights gathered before each use; with
  // tied embeddings the head uses the embedding's unit too.
  const double part = P > 1 ? double(P - 1) / P * cl.act_bytes : 0;
  const double tied = c.tie_word_embeddings ? embed : 0, head = outer - embed;  // head: norm (+ lm_head)
  const double blocks = n - outer;
  int64_t Tpad = T;
  const ChunkPasses ch = chunked ? chunk_passes(rp, T, &Tpad) : ChunkPasses{};
  const double k = chunked ? double(Tpad / rp.chunk_size) : 1, runs = k * ch.backward_share;
  double zero_bytes = 0;
  if (cl.zero <= 1 || plan.lora.enabled()) {
    zero_bytes = (cl.zero == 2 ? 1 : 2) * part * trained;  // all-reduce, or LoRA's reduce-scatter
  } else {
    zero_bytes = runs * part * (embed + blocks + head + tied);  // reduce-scatters
    if (cl.zero >= 3) {
      zero_bytes += runs * part * (embed + 2 * blocks + head + tied);  // gathers in each pass's run
      if (ch.first == 1) zero_bytes += k * part * (embed + blocks);
      if (ch.first == 2) zero_bytes += k * part * (embed + blocks + head + tied);
    }
  }
  if (cl.zero == 1 || cl.zero == 2) zero_bytes += part * trained;  // the updated parts
  out.comm_bytes = attn_bytes + zero_bytes;
  out.comm_s = out.comm_bytes / bw;
  // ring traffic overlaps with the block in hand; Ulysses' all-to-alls and ZeRO's collectives do not here
  if (kind == CpKind::hybrid) {  // all-to-alls inside a node, the ring (overlapped) across nodes
    const double a2a_bytes =
        cp_bytes_per_step(c, B, (chunked ? Tpad : local_tokens(T, CpKind::ulysses, P) * P) / Rg,
                          CpKind::ulysses, U, recomputes(plan), cl.act_bytes, 1, ch);
    // (with chunks the gathers across groups wait, as the all-to-alls do)
    const double ring_s = (attn_bytes - a2a_bytes) / bw;
    out.step_s = (slices ? out.compute_s + ring_s : std::max(out.compute_s, ring_s)) +
                 a2a_bytes / (cl.intra_gbps * 1e9) + zero_bytes / bw + local.copy_s;
  } else {
    // (ring with chunks: the gathers wait, as the all-to-alls do)
    out.step_s =
        (a2a || slices ? out.compute_s + attn_bytes / bw : std::max(out.compute_s, attn_bytes / bw)) +
        zero_bytes / bw + local.copy_s;
  }
  return out;
}

int64_t longest_cp_length(const LlamaConfig& c, const Plan& p, CpKind kind, const ClusterSpec& cl,
                          const MachineRates& r, Purpose why) {
  const int64_t unit = 2 * std::max(cl.ranks, 1);
  auto fits = [&](int64_t T) {
    try {
      return predict_cp(c, p, 1, T, kind, cl, r, why).mem.overflow(p).empty();
    } catch (const Error&) {  // a plan choice that cannot work at this length (e.g. more tiles than rows)
      return false;
    }
  };
  if (!fits(unit)) return 0;
  int64_t lo = 1, hi = 2;  // in units
  while (fits(hi * unit) && hi < (int64_t(1) << 40) / unit) lo = hi, hi *= 2;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    (fits(mid * unit) ? lo : hi) = mid;
  }
  return lo * unit;
}

}  // namespace longctx
