// Internals shared by attention_fwd.cpp and attention_bwd.cpp: an 8-lane
// float vector (AVX2 + FMA, or a portable scalar stand-in with the same
// interface), a vectorised exp2, tile geometry and masks, packing of strided
// heads into contiguous tiles, and the three register-blocked micro-kernels
// that every tile product in the forward and backward pass is made of.
//
// Scores are kept in base 2: queries are packed pre-multiplied by
// scale * log2(e), so a score s' = log2(e) * scale * q.k and exp(scale * q.k)
// = exp2(s'). That saves one multiply per score and lets exp2 work directly.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LONGCTX_ATTN_AVX2 1
#endif

#include "core/check.h"
#include "kernels/cpu/attention.h"

namespace longctx::cpu::attn {

constexpr int kR = 4;  // query rows per strip; the micro-kernels hold kR x 16 accumulators in registers
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// ---------------------------------------------------------------- 8-lane vectors
#ifdef LONGCTX_ATTN_AVX2
using vf = __m256;
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vset(float x) { return _mm256_set1_ps(x); }
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vf x) { _mm256_storeu_ps(p, x); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }  // a * b + c

inline float hsum(vf x) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(vf x) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 2^x to ~1e-7 relative: x = n + f with n integer and |f| <= 1/2, a degree-6
// polynomial (fitted for relative error on [-1/2, 1/2]) for 2^f, and n added
// into the exponent bits. Lanes below -126 (including -inf from masks) give
// exactly 0, so masked scores contribute nothing.
inline vf vexp2(vf x) {
  const vf lo = _mm256_set1_ps(-126.f);
  const vf keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(126.f));
  const vf n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = _mm256_sub_ps(x, n);
  vf p = _mm256_set1_ps(1.5345803694799542e-4f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3399932067841291e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6184890717267990e-3f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5503286421298980e-2f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022646248340607e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718246459960e-1f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
  p = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
  return _mm256_and_ps(p, keep);
}
#else
// Portable stand-in: the same algorithm on plain arrays, which the compiler
// may still vectorise with whatever the target has.
struct vf {
  float x[8];
};
inline vf vzero() { return vf{}; }
inline vf vset(float a) {
  vf r;
  for (int i = 0; i < 8; i++) r.x[i] = a;
  return r;
}
inline vf vload(const float* p) {
  vf r;
  for (int i = 0; i < 8; i++) r.x[i] = p[i];
  return r;
}
inline void vstore(float* p, vf a) {
  for (int i = 0; i < 8; i++) p[i] = a.x[i];
}
#define LONGCTX_ATTN_LANES(expr)               \
  vf r;                                        \
  for (int i = 0; i < 8; i++) r.x[i] = (expr); \
  return r
inline vf vadd(vf a, vf b) { LONGCTX_ATTN_LANES(a.x[i] + b.x[i]); }
inline vf vsub(vf a, vf b) { LONGCTX_ATTN_LANES(a.x[i] - b.x[i]); }
inline vf vmul(vf a, vf b) { LONGCTX_ATTN_LANES(a.x[i] * b.x[i]); }
inline vf vmax(vf a, vf b) { LONGCTX_ATTN_LANES(std::max(a.x[i], b.x[i])); }
inline vf vfma(vf a, vf b, vf c) { LONGCTX_ATTN_LANES(std::fma(a.x[i], b.x[i], c.x[i])); }
inline vf vexp2(vf a) { LONGCTX_ATTN_LANES(a.x[i] < -126.f ? 0.f : std::exp2(a.x[i])); }
#undef LONGCTX_ATTN_LANES
inline float hsum(vf a) {
  float s = 0;
  for (float v : a.x) s += v;
  return s;
}
inline float hmax(vf a) {
  float s = a.x[0];
  for (float v : a.x) s = std::max(s, v);
  return s;
}
#endif

// One exp2 through the vector path: no libm call (and no vzeroupper) in the hot loop.
inline float exp2_scalar(float x) {
  float lanes[8];
  vstore(lanes, vexp2(vset(x)));
  return lanes[0];
}

// ---------------------------------------------------------------- geometry
struct Geom {
  int64_t B, Tq, Tk, NH, NKV, HS;
  int64_t G;         // query heads per kv head; the G heads of a group are one work unit (shared K/V tile)
  int64_t HSp;       // HS rounded up to 8 (packed tiles are zero-padded to whole vectors)
  int64_t Br;        // queries per tile, per head
  int64_t Bc;        // keys per tile, a multiple of 16 (the width of a micro-kernel block), <= kLdS
  int64_t Bk;        // keys per backward task, a multiple of Bc (amortises packing the query side)
  int64_t nqt, nkt;  // query tiles, key tiles (of Bc keys)
  AttentionMask mask;
  float scale;
  int64_t rows_max() const { return G * round_up(Br, kR); }
};

inline Geom make_geom(const AttentionDims& d, const AttentionMask& m, float scale, bool backward) {
  Geom g{};
  g.B = d.B, g.Tq = d.Tq, g.Tk = d.Tk, g.NH = d.NH, g.NKV = d.NKV, g.HS = d.HS;
  g.G = d.NH / d.NKV;
  g.HSp = round_up(d.HS, 8);
  // Keep a unit's packed query rows (G * Br x HSp floats) around 64 KiB, so the
  // query, output and gradient rows of a unit stay in L2 while key tiles stream.
  g.Br = 64;
  while (g.Br > 8 && g.G * g.Br * g.HSp > 16384) g.Br /= 2;
  // Forward with small heads: wider key tiles amortise the per-row softmax
  // bookkeeping. Backward: five (Bc, HSp) key-side tiles are live, keep them small.
  g.Bc = !backward && g.HSp <= 32 ? 128 : 64;
  g.Bk = 256;
  g.nqt = (d.Tq + g.Br - 1) / g.Br;
  g.nkt = (d.Tk + g.Bc - 1) / g.Bc;
  g.mask = m;
  g.scale = scale;
  return g;
}

// One (query tile, key tile) pair of one batch row and kv head.
struct Tile {
  int64_t b, kvh;
  int64_t q0, nq, nqp;  // queries [q0, q0 + nq); nqp = nq rounded up to kR (rows per head in the pack)
  int64_t k0, nk, nkp;  // keys [k0, k0 + nk); nkp = nk rounded up to 16
};

// Query tile qt against keys [k0, k0 + width) (clipped to Tk).
inline Tile make_tile(const Geom& g, int64_t b, int64_t kvh, int64_t qt, int64_t k0, int64_t width) {
  Tile t;
  t.b = b, t.kvh = kvh;
  t.q0 = qt * g.Br, t.nq = std::min(g.Br, g.Tq - t.q0), t.nqp = round_up(t.nq, kR);
  t.k0 = k0, t.nk = std::min(width, g.Tk - k0), t.nkp = round_up(t.nk, 16);
  return t;
}

// Last key tile (exclusive) that a query tile can see under the causal mask.
inline int64_t key_tile_end(const Geom& g, int64_t q0, int64_t nq) {
  if (!g.mask.causal) return g.nkt;
  const int64_t last = g.mask.q_offset + q0 + nq - 1;  // position of the tile's last query
  if (last < 0) return 0;
  return std::min(g.nkt, last / g.Bc + 1);
}

enum class Vis { none, all, some };

// Whether every, no, or some (query, key) pair of the tile is visible. Only
// "some" tiles pay for per-element masking; "none" tiles are skipped.
inline Vis classify(const Geom& g, const Tile& t) {
  if (t.nq <= 0 || t.nk <= 0) return Vis::none;
  const AttentionMask& m = g.mask;
  bool all = t.nk % 16 == 0;  // otherwise the padding up to nkp needs masking
  if (m.causal) {
    if (t.k0 > m.q_offset + t.q0 + t.nq - 1) return Vis::none;
    all = all && t.k0 + t.nk - 1 <= m.q_offset + t.q0;
  }
  if (m.window > 0) {  // key j visible to query i iff j > q_offset + i - window
    const int64_t first = m.q_offset + t.q0, last = first + t.nq - 1;
    if (t.k0 + t.nk - 1 <= first - m.window) return Vis::none;  // every key too old for every query
    all = all && t.k0 > last - m.window;
  }
  if (m.q_doc) {
    const int32_t* qd = m.q_doc + t.b * g.Tq + t.q0;
    const int32_t* kd = m.k_doc + t.b * g.Tk + t.k0;
    const auto [qlo, qhi] = std::minmax_element(qd, qd + t.nq);
    const auto [klo, khi] = std::minmax_element(kd, kd + t.nk);
    if (*qhi < *klo || *khi < *qlo) return Vis::none;  // no id in common
    all = all && *qlo == *qhi && *klo == *khi && *qlo == *klo;
  }
  return all ? Vis::all : Vis::some;
}

// Sets S[r][j] = -inf (r < kR, j < ncols) where key t.k0 + j is not visible
// to query t.q0 + i0 + r, is padding (j >= nk), or the row is padding.
inline void mask_strip(float* S, int64_t lds, const Geom& g, const Tile& t, int64_t i0, int64_t ncols) {
  const AttentionMask& m = g.mask;
  for (int r = 0; r < kR; r++) {
    float* s = S + r * lds;
    const int64_t i = t.q0 + i0 + r;                          // query index
    int64_t lim = i0 + r < t.nq ? std::min(ncols, t.nk) : 0;  // keys [0, lim) may be visible
    if (m.causal) lim = std::min(lim, std::max<int64_t>(0, m.q_offset + i - t.k0 + 1));
    for (int64_t j = lim; j < ncols; j++) s[j] = -kInf;
    if (m.window > 0)  // keys before the window
      for (int64_t j = 0, lo = std::min(lim, m.q_offset + i - m.window + 1 - t.k0); j < lo; j++) s[j] = -kInf;
    if (!m.q_doc || lim == 0) continue;
    const int32_t qd = m.q_doc[t.b * g.Tq + i];
    const int32_t* kd = m.k_doc + t.b * g.Tk + t.k0;
    for (int64_t j = 0; j < lim; j++)
      if (kd[j] != qd) s[j] = -kInf;
  }
}

// Columns of the key tile a strip has to compute: under the causal mask a
// strip on the diagonal sees only keys up to its last query's position.
inline int64_t strip_cols(const Geom& g, const Tile& t, int64_t i0) {
  if (!g.mask.causal) return t.nkp;
  const int64_t last = g.mask.q_offset + t.q0 + std::min(i0 + kR, t.nq) - 1 - t.k0;  // last key index seen
  return std::min(t.nkp, round_up(std::max<int64_t>(last + 1, 0), 16));
}

// ---------------------------------------------------------------- packing
// dst (G * nqp, HSp): row gg * nqp + i = mul * src[b, q0 + i, kvh * G + gg, :]
// for a tensor laid out like q (B, Tq, NH, HS); padding rows and columns are 0.
inline void pack_q_rows(float* dst, const float* src, const Geom& g, const Tile& t, float mul) {
  for (int64_t gg = 0; gg < g.G; gg++)
    for (int64_t i = 0; i < t.nqp; i++) {
      float* o = dst + (gg * t.nqp + i) * g.HSp;
      int64_t d = 0;
      if (i < t.nq) {
        const float* s = src + ((t.b * g.Tq + t.q0 + i) * g.NH + t.kvh * g.G + gg) * g.HS;
        for (; d < g.HS; d++) o[d] = mul * s[d];
      }
      for (; d < g.HSp; d++) o[d] = 0.f;
    }
}

// dst (nkp, HSp) = src[b, k0 + j, kvh, :] for a tensor laid out like k (B, Tk, NKV, HS);
// padding rows and columns are 0.
inline void pack_k_rows(float* dst, const float* src, const Geom& g, const Tile& t) {
  for (int64_t j = 0; j < t.nkp; j++) {
    float* o = dst + j * g.HSp;
    int64_t d = 0;
    if (j < t.nk) {
      const float* s = src + ((t.b * g.Tk + t.k0 + j) * g.NKV + t.kvh) * g.HS;
      for (; d < g.HS; d++) o[d] = s[d];
    }
    for (; d < g.HSp; d++) o[d] = 0.f;
  }
}

// Four rows a, b, c, d (8 columns each, lda apart) interleaved column by
// column: o = a0 b0 c0 d0 a1 b1 c1 d1 ... a7 b7 c7 d7.
inline void interleave4x8(const float* a, int64_t lda, float* o) {
#ifdef LONGCTX_ATTN_AVX2
  const vf r0 = vload(a), r1 = vload(a + lda), r2 = vload(a + 2 * lda), r3 = vload(a + 3 * lda);
  const vf t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);  // a0 b0 a1 b1 | a4 b4 a5 b5
  const vf t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const vf u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);  // cols 0|4, 1|5
  const vf u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);  // cols 2|6, 3|7
  vstore(o, _mm256_permute2f128_ps(u0, u1, 0x20));
  vstore(o + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
  vstore(o + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
  vstore(o + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
#else
  for (int d = 0; d < 8; d++)
    for (int r = 0; r < kR; r++) o[d * kR + r] = a[r * lda + d];
#endif
}

// dst[d * ldd + j] = src[j * lds + d] for an 8 x 8 block.
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
#ifdef LONGCTX_ATTN_AVX2
  vf t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    const vf r0 = vload(src + i * lds), r1 = vload(src + (i + 1) * lds);
    t[i] = _mm256_unpacklo_ps(r0, r1), t[i + 1] = _mm256_unpackhi_ps(r0, r1);
  }
  for (int i = 0; i < 8; i += 4) {  // u[i + c]: columns c and c + 4 of rows i .. i + 3
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44), u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44),
          u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    vstore(dst + c * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x20));
    vstore(dst + (c + 4) * ldd, _mm256_permute2f128_ps(u[c], u[c + 4], 0x31));
  }
#else
  for (int j = 0; j < 8; j++)
    for (int d = 0; d < 8; d++) dst[d * ldd + j] = src[j * lds + d];
#endif
}

// Strips for strip_abt from packed rows (HSp apart; nrows a multiple of kR):
// strip n (rows n kR .. n kR + kR - 1) becomes dst[n kR HSp + d kR + r].
inline void interleave_strips(float* dst, const float* rows, int64_t nrows, int64_t HSp) {
  for (int64_t n = 0; n < nrows; n += kR)
    for (int64_t d = 0; d < HSp; d += 8) interleave4x8(rows + n * HSp + d, HSp, dst + n * HSp + d * kR);
}

// dst (HSp, ldd) = rows (nrows, HSp) transposed; nrows a multiple of 8.
inline void transpose_rows(float* dst, int64_t ldd, const float* rows, int64_t nrows, int64_t HSp) {
  for (int64_t j = 0; j < nrows; j += 8)
    for (int64_t d = 0; d < HSp; d += 8) transpose8x8(rows + j * HSp + d, HSp, dst + d * ldd + j, ldd);
}

// ---------------------------------------------------------------- micro-kernels
// Strips of scores / probabilities are (kR, kLdS) with a compile-time row
// stride, so the kernels address all kR rows from one pointer with constant
// offsets instead of tying up a register per row.
constexpr int64_t kLdS = 128;  // >= every key tile width Bc

// Keeps a loaded vector in a register: without it GCC folds the load into
// every FMA that uses it, which turns a compute-bound loop load-bound.
inline void in_register(vf& x) {
#ifdef LONGCTX_ATTN_AVX2
  asm("" : "+x"(x));
#else
  (void)x;
#endif
}

// S (kR, ncols) = epi(A (kR, K) * Bt (K, ncols)) with A interleaved (K, kR)
// as packed by interleave_strips; ncols a multiple of 16. Keys run along the
// vector lanes, so the softmax that follows is lane-parallel too. The
// epilogue epi(row, column, vector) sees each block while it is still in
// registers, so elementwise work that follows (row max, exp, dS) costs no
// extra pass over memory.
template <class Epilogue>
inline void strip_abt(float* S, const float* A, const float* Bt, int64_t ldb, int64_t K, int64_t ncols,
                      Epilogue&& epi) {
  for (int64_t j = 0; j < ncols; j += 16) {
    vf acc[kR][2];
    for (int r = 0; r < kR; r++) acc[r][0] = acc[r][1] = vzero();
    const float* bt = Bt + j;
    for (int64_t d = 0; d < K; d++, bt += ldb) {
      vf b0 = vload(bt), b1 = vload(bt + 8);
      in_register(b0), in_register(b1);
#pragma GCC unroll 4
      for (int r = 0; r < kR; r++) {
        const vf a = vset(A[d * kR + r]);
        acc[r][0] = vfma(a, b0, acc[r][0]);
        acc[r][1] = vfma(a, b1, acc[r][1]);
      }
    }
    for (int r = 0; r < kR; r++) {
      vstore(S + r * kLdS + j, epi(r, j, acc[r][0]));
      vstore(S + r * kLdS + j + 8, epi(r, j + 8, acc[r][1]));
    }
  }
}

inline void strip_abt(float* S, const float* A, const float* Bt, int64_t ldb, int64_t K, int64_t ncols) {
  strip_abt(S, A, Bt, ldb, K, ncols, [](int, int64_t, vf x) { return x; });
}

// C (kR, 8 NV) += P (kR, nj) * M (nj, 8 NV), C rows ldc apart, M rows ldm apart; NV is 1 or 2.
// (Named registers rather than arrays: GCC spills arrays pinned by in_register.)
template <int NV>
inline void strip_ab_block(float* C, int64_t ldc, const float* P, const float* M, int64_t ldm, int64_t nj) {
  static_assert(NV == 1 || NV == 2);
  vf acc[kR][NV];
  for (int r = 0; r < kR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vload(C + r * ldc + 8 * v);
  for (int64_t j = 0; j < nj; j++, M += ldm) {
    vf m0 = vload(M), m1 = NV == 2 ? vload(M + 8) : m0;
    in_register(m0), in_register(m1);
#pragma GCC unroll 4
    for (int r = 0; r < kR; r++) {
      const vf p = vset(P[r * kLdS + j]);
      acc[r][0] = vfma(p, m0, acc[r][0]);
      if constexpr (NV == 2) acc[r][NV - 1] = vfma(p, m1, acc[r][NV - 1]);
    }
  }
  for (int r = 0; r < kR; r++)
    for (int v = 0; v < NV; v++) vstore(C + r * ldc + 8 * v, acc[r][v]);
}

// C (kR, ncols) += P (kR, nj) * M (nj, ncols); ncols a multiple of 8. O += P V, dQ += dS K.
inline void strip_ab_acc(float* C, int64_t ldc, const float* P, const float* M, int64_t ldm, int64_t nj,
                         int64_t ncols) {
  int64_t c = 0;
  for (; c + 16 <= ncols; c += 16) strip_ab_block<2>(C + c, ldc, P, M + c, ldm, nj);
  if (c < ncols) strip_ab_block<1>(C + c, ldc, P, M + c, ldm, nj);
}

// C (nj, 8 NV) += P^T (nj, kR) * A (kR, 8 NV): the strip's rows of A stay in
// registers while each row of C is loaded, updated kR times and stored.
template <int NV>
inline void strip_atb_block(float* C, int64_t ldc, const float* P, const float* A, int64_t lda, int64_t nj) {
  vf a[kR][NV];
  for (int r = 0; r < kR; r++)
    for (int v = 0; v < NV; v++) a[r][v] = vload(A + r * lda + 8 * v), in_register(a[r][v]);
  for (int64_t j = 0; j < nj; j++, C += ldc) {
    vf acc[NV];
    for (int v = 0; v < NV; v++) acc[v] = vload(C + 8 * v);
#pragma GCC unroll 4
    for (int r = 0; r < kR; r++) {
      const vf p = vset(P[r * kLdS + j]);
      for (int v = 0; v < NV; v++) acc[v] = vfma(p, a[r][v], acc[v]);
    }
    for (int v = 0; v < NV; v++) vstore(C + 8 * v, acc[v]);
  }
}

// C (nj, ncols) += P^T (nj, kR) * A (kR, ncols); ncols a multiple of 8. dV += P^T dO, dK += dS^T Q.
inline void strip_atb_acc(float* C, int64_t ldc, const float* P, const float* A, int64_t lda, int64_t nj,
                          int64_t ncols) {
  int64_t c = 0;
  for (; c + 16 <= ncols; c += 16) strip_atb_block<2>(C + c, ldc, P, A + c, lda, nj);
  if (c < ncols) strip_atb_block<1>(C + c, ldc, P, A + c, lda, nj);
}

// ---------------------------------------------------------------- scratch
// One 64-byte aligned block per thread, carved into the tile buffers. It is
// allocated before the parallel region so that a failure throws in one place.
class ThreadScratch {
 public:
  ThreadScratch(int threads, size_t floats_per_thread)
      : per_(size_t(round_up(int64_t(floats_per_thread), 16))) {
    const size_t bytes = std::max<size_t>(size_t(threads) * per_ * sizeof(float), 64);
    p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    CHECK(p_, "[attention] cannot allocate ", bytes, " bytes of per-thread tile scratch");
  }
  ~ThreadScratch() { std::free(p_); }
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;
  float* thread(int i) const { return p_ + size_t(i) * per_; }

 private:
  size_t per_;
  float* p_ = nullptr;
};

// Hands out consecutive 64-byte aligned pieces of one thread's block; with a
// null base it only counts, which is how the block size is computed.
struct Carver {
  float* base = nullptr;
  int64_t used = 0;
  float* take(int64_t n) {
    float* r = base ? base + used : nullptr;
    used += round_up(n, 16);
    return r;
  }
};

}  // namespace longctx::cpu::attn
