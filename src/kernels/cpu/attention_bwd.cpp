// Flash attention backward on the CPU (FlashAttention-2 style): per (query
// tile, key tile) pair the scores are recomputed from q, k and the saved
// log-sum-exp, P = exp(s - lse), dP = dO V^T, dS = P (dP - D) with
// D = rowsum(dO * O); then dV += P^T dO, dK += dS^T Q and dQ += dS K.
//
// Parallel without races or atomics, and deterministic independent of the
// thread count: a task is one query tile against a range of Bk keys, adding
// into its own rows of dq and dk/dv; tasks that share a query tile or a key
// range are chained by task dependences in one fixed order. Tasks are created
// in diagonal sweeps (sweep s pairs key range kt with query tile (kt + s) mod
// N), so the tasks of a sweep share no tile and a thread that finishes early
// starts on the next sweep instead of waiting at a barrier. Every row of dq,
// dk, dv receives its contributions in the same order whatever the thread
// count or timing.
#include <omp.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/attention_internal.h"

namespace longctx::cpu {
namespace {
using namespace attn;

struct BwdBufs {
  float* Qs;   // (G * nqp, HSp) queries times scale * log2(e)
  float* Qi;   // (G * nqp / kR, HSp, kR) the same, as interleaved strips
  float* dO;   // (G * nqp, HSp) output gradient rows
  float* dOi;  // (G * nqp / kR, HSp, kR) the same, as interleaved strips
  float* dQ;   // (G * nqp, HSp) sum_j dS K over the task's keys
  float* L;    // (G * nqp) lse in base 2; +inf for rows that see nothing (so P = 0)
  float* D;    // (G * nqp) rowsum(dO * O)
  float* Kt;   // (HSp, Bc) key tile, transposed
  float* Vt;   // (HSp, Bc) value tile, transposed
  float* K;    // (Bc, HSp) key tile
  float* dK;   // (Bc, HSp) sum_i dS^T Q of this key tile
  float* dV;   // (Bc, HSp) sum_i P^T dO of this key tile
  float* P;    // (kR, kLdS) probabilities of one strip
  float* dS;   // (kR, kLdS) dP, then dS, of one strip
};

BwdBufs carve_bwd(Carver& c, const Geom& g) {
  const int64_t rows = g.rows_max();
  BwdBufs w;
  w.Qs = c.take(rows * g.HSp), w.Qi = c.take(rows * g.HSp);
  w.dO = c.take(rows * g.HSp), w.dOi = c.take(rows * g.HSp), w.dQ = c.take(rows * g.HSp);
  w.L = c.take(rows), w.D = c.take(rows);
  w.Kt = c.take(g.HSp * g.Bc), w.Vt = c.take(g.HSp * g.Bc), w.K = c.take(g.Bc * g.HSp);
  w.dK = c.take(g.Bc * g.HSp), w.dV = c.take(g.Bc * g.HSp);
  w.P = c.take(kR * kLdS), w.dS = c.take(kR * kLdS);
  return w;
}

size_t bwd_floats(const Geom& g) {
  Carver c;  // counts only
  carve_bwd(c, g);
  return size_t(c.used);
}

struct BwdArgs {
  float *dq, *dk, *dv;
  const float *dout, *q, *k, *v;
  const float* L;  // (B, NH, Tq) lse in base 2, +inf where lse = -inf
  const float* D;  // (B, NH, Tq) rowsum(dout * out)
};

// L and D for every query row, once, rather than in every task that uses the row.
void row_stats(float* L, float* D, const float* dout, const float* out, const float* lse, const Geom& g) {
#pragma omp for schedule(static)
  for (int64_t bh = 0; bh < g.B * g.NH; bh++) {
    const int64_t b = bh / g.NH, h = bh % g.NH;
    for (int64_t i = 0; i < g.Tq; i++) {
      const int64_t at = bh * g.Tq + i, row = ((b * g.Tq + i) * g.NH + h) * g.HS;
      float dot = 0.f;
      for (int64_t d = 0; d < g.HS; d++) dot += dout[row + d] * out[row + d];
      // A row that saw no key (lse = -inf) gets L = +inf: P = 0, so no gradient flows through it.
      L[at] = lse[at] == -kInf ? kInf : lse[at] * kLog2e;
      D[at] = dot;
    }
  }
}

// Packs the query side of a task: scaled q and dO (as rows and as strips), L and D.
void pack_query_side(const Geom& g, const BwdArgs& a, const Tile& t, const BwdBufs& w) {
  const int64_t rows = g.G * t.nqp;
  pack_q_rows(w.Qs, a.q, g, t, g.scale * kLog2e);
  interleave_strips(w.Qi, w.Qs, rows, g.HSp);
  pack_q_rows(w.dO, a.dout, g, t, 1.f);
  interleave_strips(w.dOi, w.dO, rows, g.HSp);
  for (int64_t gg = 0; gg < g.G; gg++) {
    const int64_t at = (t.b * g.NH + t.kvh * g.G + gg) * g.Tq + t.q0;
    for (int64_t i = 0; i < t.nqp; i++) {
      w.L[gg * t.nqp + i] = i < t.nq ? a.L[at + i] : kInf;
      w.D[gg * t.nqp + i] = i < t.nq ? a.D[at + i] : 0.f;
    }
  }
}

// P = exp2(s - L) in place. (Not in the epilogue of the score product: the
// exp constants would take the registers its accumulators need.)
void strip_probs(float* P, int64_t ncols, const float* L) {
  for (int r = 0; r < kR; r++) {
    const vf lv = vset(L[r]);
    for (int64_t j = 0; j < ncols; j += 8) vstore(P + r * kLdS + j, vexp2(vsub(vload(P + r * kLdS + j), lv)));
  }
}

// One strip of kR query rows (one head) against a key tile. dS = P (dP - D)
// is formed in the epilogue of the dP product.
void backward_strip(const Geom& g, const Tile& t, Vis vis, int64_t i0, int64_t r0, int64_t ncols,
                    const BwdBufs& w) {
  strip_abt(w.P, w.Qi + r0 * g.HSp, w.Kt, g.Bc, g.HS, ncols);
  if (vis == Vis::some) mask_strip(w.P, kLdS, g, t, i0, ncols);
  strip_probs(w.P, ncols, w.L + r0);
  const float* P = w.P;
  const float* D = w.D + r0;
  strip_abt(w.dS, w.dOi + r0 * g.HSp, w.Vt, g.Bc, g.HS, ncols,
            [&](int r, int64_t j, vf dp) { return vmul(vload(P + r * kLdS + j), vsub(dp, vset(D[r]))); });
  const int64_t nj = std::min(ncols, t.nk);
  strip_atb_acc(w.dV, g.HSp, w.P, w.dO + r0 * g.HSp, g.HSp, nj, g.HSp);
  strip_atb_acc(w.dK, g.HSp, w.dS, w.Qs + r0 * g.HSp, g.HSp, nj, g.HSp);
  strip_ab_acc(w.dQ + r0 * g.HSp, g.HSp, w.dS, w.K, g.HSp, nj, g.HSp);
}

// The task's query rows against one key tile, added into the tile's rows of
// dk and dv. dK was taken against the scaled queries, so ln 2
// (= scale / (scale * log2 e)) turns it into dk.
void backward_key_tile(const Geom& g, const BwdArgs& a, const Tile& t, Vis vis, const BwdBufs& w) {
  pack_k_rows(w.K, a.k, g, t);
  transpose_rows(w.Kt, g.Bc, w.K, t.nkp, g.HSp);
  pack_k_rows(w.dV, a.v, g, t);  // dV is free until it is zeroed below
  transpose_rows(w.Vt, g.Bc, w.dV, t.nkp, g.HSp);
  std::fill(w.dK, w.dK + t.nkp * g.HSp, 0.f);
  std::fill(w.dV, w.dV + t.nkp * g.HSp, 0.f);
  for (int64_t i0 = 0; i0 < t.nq; i0 += kR) {
    const int64_t ncols = strip_cols(g, t, i0);
    if (ncols == 0) continue;
    for (int64_t gg = 0; gg < g.G; gg++) {
      const int64_t r0 = gg * t.nqp + i0;
      bool live = false;  // padding and fully masked rows have L = +inf
      for (int r = 0; r < kR; r++) live = live || w.L[r0 + r] != kInf;
      if (live) backward_strip(g, t, vis, i0, r0, ncols, w);
    }
  }
  for (int64_t j = 0; j < t.nk; j++) {
    const int64_t off = ((t.b * g.Tk + t.k0 + j) * g.NKV + t.kvh) * g.HS;
    for (int64_t d = 0; d < g.HS; d++) {
      a.dk[off + d] += kLn2 * w.dK[j * g.HSp + d];
      a.dv[off + d] += w.dV[j * g.HSp + d];
    }
  }
}

// One task: a query tile against the keys [k0, k0 + Bk), one key tile at a time.
void backward_task(const Geom& g, const BwdArgs& a, const Tile& task, const BwdBufs& w) {
  pack_query_side(g, a, task, w);
  std::fill(w.dQ, w.dQ + g.G * task.nqp * g.HSp, 0.f);
  for (int64_t k0 = task.k0; k0 < task.k0 + task.nk; k0 += g.Bc) {
    const Tile t = make_tile(g, task.b, task.kvh, task.q0 / g.Br, k0, g.Bc);
    const Vis vis = classify(g, t);
    if (vis != Vis::none) backward_key_tile(g, a, t, vis, w);
  }
  for (int64_t gg = 0; gg < g.G; gg++)
    for (int64_t i = 0; i < task.nq; i++) {
      float* dq = a.dq + ((task.b * g.Tq + task.q0 + i) * g.NH + task.kvh * g.G + gg) * g.HS;
      const float* src = w.dQ + (gg * task.nqp + i) * g.HSp;
      for (int64_t d = 0; d < g.HS; d++) dq[d] += g.scale * src[d];
    }
}

void zero_parallel(float* p, int64_t n) {
  constexpr int64_t kChunk = 1 << 16;
#pragma omp for schedule(static)
  for (int64_t c = 0; c < n; c += kChunk) std::memset(p + c, 0, size_t(std::min(kChunk, n - c)) * 4);
}

}  // namespace

size_t attention_backward_workspace_floats(const AttentionDims& d) { return size_t(2 * d.B * d.NH * d.Tq); }

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, float* workspace,
                        const AttentionDims& d, const AttentionMask& m, float scale) {
  const Geom g = make_geom(d, m, scale, /*backward=*/true);
  const int threads = omp_get_max_threads();
  const ThreadScratch scratch(threads, bwd_floats(g));
  float* L = workspace;                      // (B, NH, Tq)
  float* D = workspace + g.B * g.NH * g.Tq;  // (B, NH, Tq)
  const BwdArgs a{dq, dk, dv, dout, q, k, v, L, D};
  const int64_t nqt = g.nqt, nkt = (g.Tk + g.Bk - 1) / g.Bk, sweeps = std::max(nqt, nkt);
  // Dependence tokens: one per (b, kv head, query tile) and per (b, kv head, task key range).
  std::vector<char> q_tok(size_t(g.B * g.NKV * nqt)), k_tok(size_t(g.B * g.NKV * nkt));
  [[maybe_unused]] char* qt_tok = q_tok.data();  // used only in depend clauses, which GCC misses
  [[maybe_unused]] char* kt_tok = k_tok.data();
#pragma omp parallel num_threads(threads)
  {
    zero_parallel(dq, g.B * g.Tq * g.NH * g.HS);
    zero_parallel(dk, g.B * g.Tk * g.NKV * g.HS);
    zero_parallel(dv, g.B * g.Tk * g.NKV * g.HS);
    row_stats(L, D, dout, out, lse, g);
#pragma omp single
    for (int64_t s = 0; s < sweeps; s++)
      for (int64_t bk = 0; bk < g.B * g.NKV; bk++)
        for (int64_t kt = 0; kt < nkt; kt++) {
          const int64_t qt = (kt + s) % sweeps;
          if (qt >= nqt) continue;
          const Tile t = make_tile(g, bk / g.NKV, bk % g.NKV, qt, kt * g.Bk, g.Bk);
          if (classify(g, t) == Vis::none) continue;
#pragma omp task firstprivate(t) depend(inout : qt_tok[bk * nqt + qt], kt_tok[bk * nkt + kt])
          {
            Carver c{scratch.thread(omp_get_thread_num())};
            backward_task(g, a, t, carve_bwd(c, g));
          }
        }
  }
}

}  // namespace longctx::cpu
