// Flash attention forward on the CPU. A work unit is one (batch row, kv head,
// query tile): the G query heads that share the kv head are packed together,
// so every key/value tile is packed once and reused by G * Br query rows.
// Units are independent, so the result does not depend on the thread count.
#include <omp.h>

#include "kernels/cpu/attention_internal.h"

namespace longctx::cpu {
namespace {
using namespace attn;

struct FwdBufs {
  float* Qs;  // (G * nqp / kR, HSp, kR) query strips times scale * log2(e)
  float* O;   // (G * nqp, HSp) unnormalised output accumulators
  float* m;   // (G * nqp) running row max of the base-2 scores
  float* l;   // (G * nqp) running row sum of exp2(s - m)
  float* K;   // (Bc, HSp) key tile
  float* Kt;  // (HSp, Bc) key tile, transposed
  float* V;   // (Bc, HSp) value tile
  float* S;   // (kR, kLdS) scores, then probabilities, of one strip
};

FwdBufs carve_fwd(Carver& c, const Geom& g) {
  const int64_t rows = g.rows_max();
  FwdBufs w;
  w.Qs = c.take(rows * g.HSp), w.O = c.take(rows * g.HSp);
  w.m = c.take(rows), w.l = c.take(rows);
  w.K = c.take(g.Bc * g.HSp), w.Kt = c.take(g.HSp * g.Bc), w.V = c.take(g.Bc * g.HSp);
  w.S = c.take(kR * kLdS);
  return w;
}

size_t fwd_floats(const Geom& g) {
  Carver c;  // counts only
  carve_fwd(c, g);
  return size_t(c.used);
}

// Row maxima of a strip of scores (after masking).
void strip_max(const float* S, int64_t ncols, vf* mx) {
  for (int r = 0; r < kR; r++) {
    mx[r] = vset(-kInf);
    for (int64_t j = 0; j < ncols; j += 8) mx[r] = vmax(mx[r], vload(S + r * kLdS + j));
  }
}

// Online softmax of one strip: S holds kR rows of base-2 scores with lane-wise
// row maxima mx; they become exp2(s - m_new) in place, m and l are updated,
// and rows of O are rescaled by exp2(m_old - m_new) when the running max moved.
void softmax_strip(float* S, int64_t ncols, const vf* mx, float* m, float* l, float* O, int64_t HSp) {
  for (int r = 0; r < kR; r++) {
    float* s = S + r * kLdS;
    const float m_new = std::max(m[r], hmax(mx[r]));
    if (m_new == -kInf) {  // nothing visible to this row yet: contributes nothing
      for (int64_t j = 0; j < ncols; j += 8) vstore(s + j, vzero());
      continue;
    }
    const vf mv = vset(m_new);
    vf sum = vzero();
    for (int64_t j = 0; j < ncols; j += 8) {
      const vf p = vexp2(vsub(vload(s + j), mv));
      vstore(s + j, p);
      sum = vadd(sum, p);
    }
    const float tile_sum = hsum(sum);
    if (m_new == m[r]) {
      l[r] += tile_sum;
      continue;
    }
    // The max moved: what was summed so far shrinks by exp2(m_old - m_new), 0 when m_old = -inf.
    const float alpha = exp2_scalar(m[r] - m_new);
    l[r] = l[r] * alpha + tile_sum;
    m[r] = m_new;
    const vf av = vset(alpha);
    float* o = O + r * HSp;
    for (int64_t d = 0; d < HSp; d += 8) vstore(o + d, vmul(vload(o + d), av));
  }
}

struct FwdArgs {
  float* out;
  float* lse;
  const float *q, *k, *v;
};

// out = O / l, lse = ln 2 * (m + log2 l); rows that saw nothing get 0 and -inf.
void write_unit(const Geom& g, const FwdArgs& a, const Tile& t, const FwdBufs& w) {
  for (int64_t gg = 0; gg < g.G; gg++) {
    const int64_t h = t.kvh * g.G + gg;
    for (int64_t i = 0; i < t.nq; i++) {
      const int64_t r = gg * t.nqp + i;
      float* o = a.out + ((t.b * g.Tq + t.q0 + i) * g.NH + h) * g.HS;
      float* lse = a.lse + (t.b * g.NH + h) * g.Tq + t.q0 + i;
      if (w.l[r] > 0.f) {
        const float inv = 1.f / w.l[r];
        for (int64_t d = 0; d < g.HS; d++) o[d] = w.O[r * g.HSp + d] * inv;
        *lse = (w.m[r] + std::log2(w.l[r])) * kLn2;
      } else {
        for (int64_t d = 0; d < g.HS; d++) o[d] = 0.f;
        *lse = -kInf;
      }
    }
  }
}

// One strip of kR query rows (one head, packed rows r0 ..) against a key tile.
void forward_strip(const Geom& g, const Tile& t, Vis vis, int64_t i0, int64_t r0, int64_t ncols,
                   const FwdBufs& w) {
  vf mx[kR];
  if (vis == Vis::all) {  // the row maxima come straight from the registers
    for (int r = 0; r < kR; r++) mx[r] = vset(-kInf);
    strip_abt(w.S, w.Qs + r0 * g.HSp, w.Kt, g.Bc, g.HS, ncols, [&](int r, int64_t, vf x) {
      mx[r] = vmax(mx[r], x);
      return x;
    });
  } else {
    strip_abt(w.S, w.Qs + r0 * g.HSp, w.Kt, g.Bc, g.HS, ncols);
    mask_strip(w.S, kLdS, g, t, i0, ncols);
    strip_max(w.S, ncols, mx);
  }
  softmax_strip(w.S, ncols, mx, w.m + r0, w.l + r0, w.O + r0 * g.HSp, g.HSp);
  strip_ab_acc(w.O + r0 * g.HSp, g.HSp, w.S, w.V, g.HSp, std::min(ncols, t.nk), g.HSp);
}

void forward_unit(const Geom& g, const FwdArgs& a, int64_t b, int64_t kvh, int64_t qt, const FwdBufs& w) {
  const Tile tq = make_tile(g, b, kvh, qt, 0, 0);  // the query side
  const int64_t rows = g.G * tq.nqp;
  pack_q_rows(w.O, a.q, g, tq, g.scale * kLog2e);  // O is free until the first key tile
  interleave_strips(w.Qs, w.O, rows, g.HSp);
  std::fill(w.O, w.O + rows * g.HSp, 0.f);
  std::fill(w.m, w.m + rows, -kInf);
  std::fill(w.l, w.l + rows, 0.f);
  const int64_t kt_end = key_tile_end(g, tq.q0, tq.nq);
  for (int64_t kt = 0; kt < kt_end; kt++) {
    const Tile t = make_tile(g, b, kvh, qt, kt * g.Bc, g.Bc);
    const Vis vis = classify(g, t);
    if (vis == Vis::none) continue;
    pack_k_rows(w.K, a.k, g, t);
    transpose_rows(w.Kt, g.Bc, w.K, t.nkp, g.HSp);
    pack_k_rows(w.V, a.v, g, t);
    for (int64_t i0 = 0; i0 < t.nq; i0 += kR) {
      const int64_t ncols = strip_cols(g, t, i0);
      if (ncols == 0) continue;
      for (int64_t gg = 0; gg < g.G; gg++) forward_strip(g, t, vis, i0, gg * t.nqp + i0, ncols, w);
    }
  }
  write_unit(g, a, tq, w);
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionDims& d, const AttentionMask& m, float scale) {
  const Geom g = make_geom(d, m, scale, /*backward=*/false);
  const int threads = omp_get_max_threads();
  const ThreadScratch scratch(threads, fwd_floats(g));
  const FwdArgs a{out, lse, q, k, v};
  const int64_t groups = g.B * g.NKV;
  const int64_t units = groups * g.nqt;
#pragma omp parallel num_threads(threads)
  {
    Carver c{scratch.thread(omp_get_thread_num())};
    const FwdBufs w = carve_fwd(c, g);
    // Causal work grows with the query tile: hand out the heaviest units first.
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; u++) {
      const int64_t qt = g.nqt - 1 - u / groups, b = (u % groups) / g.NKV, kvh = u % g.NKV;
      forward_unit(g, a, b, kvh, qt, w);
    }
  }
}

}  // namespace longctx::cpu
