// Emulated CUDA kernels against the CPU kernels: fp32 attention forward, backward and merge.
#include "harness.h"

// ------------------------------------------------------------------------------------------ attention
// cuda::attention_forward / attention_backward (fp32, one warp per row) against the CPU kernels and a naive
// double-precision reference of the mask contract (kernels/cpu/attention.h): causal or not, q_offset,
// sliding window, document ids, GQA, every register chunk count NC = 1 .. 8.
struct AttnCase {
  int64_t B, Tq, Tk, NH, NKV, HS;
  bool causal;
  int64_t q_offset, window;
  int docs;  // 0 none, 1 sorted runs, 2 random ids
};
static bool visible(const cpu::AttentionMask& m, const int32_t* qd, const int32_t* kd, int64_t i, int64_t j) {
  if (m.causal && j > m.q_offset + i) return false;
  if (m.window > 0 && j <= m.q_offset + i - m.window) return false;
  if (qd && qd[i] != kd[j]) return false;
  return true;
}
// out, lse, dq, dk, dv in double from the definition
static void ref_attention(const cpu::AttentionDims& d, const cpu::AttentionMask& m, float scale, const F& q,
                          const F& k, const F& v, const F& dout, F& out, F& lse, F& dq, F& dk, F& dv) {
  const int64_t G = d.NH / d.NKV, HS = d.HS;
  out.assign(size_t(d.B * d.Tq * d.NH * HS), 0.f), lse.assign(size_t(d.B * d.NH * d.Tq), -INFINITY);
  dq.assign(out.size(), 0.f), dk.assign(size_t(d.B * d.Tk * d.NKV * HS), 0.f), dv.assign(dk.size(), 0.f);
  std::vector<double> dkd(dk.size(), 0.0), dvd(dk.size(), 0.0);
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t h = 0; h < d.NH; h++)
      for (int64_t i = 0; i < d.Tq; i++) {
        const float* qi = &q[size_t(((b * d.Tq + i) * d.NH + h) * HS)];
        const float* gi = &dout[size_t(((b * d.Tq + i) * d.NH + h) * HS)];
        const int32_t *qd = m.q_doc ? m.q_doc + b * d.Tq : nullptr,
                      *kd = m.k_doc ? m.k_doc + b * d.Tk : nullptr;
        std::vector<double> s(size_t(d.Tk), -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < d.Tk; j++) {
          if (!visible(m, qd, kd, i, j)) continue;
          const float* kj = &k[size_t(((b * d.Tk + j) * d.NKV + h / G) * HS)];
          double a = 0;
          for (int64_t e = 0; e < HS; e++) a += double(qi[e]) * kj[e];
          s[size_t(j)] = a * scale, mx = std::max(mx, s[size_t(j)]);
        }
        if (mx == -INFINITY) continue;
        double l = 0;
        for (double x : s) l += std::exp(x - mx);
        const double L = mx + std::log(l);
        lse[size_t((b * d.NH + h) * d.Tq + i)] = float(L);
        std::vector<double> o(size_t(HS), 0.0), dqi(size_t(HS), 0.0), dp(size_t(d.Tk), 0.0);
        double Dr = 0;
        for (int64_t j = 0; j < d.Tk; j++) {
          if (s[size_t(j)] == -INFINITY) continue;
          const double p = std::exp(s[size_t(j)] - L);
          const float* vj = &v[size_t(((b * d.Tk + j) * d.NKV + h / G) * HS)];
          for (int64_t e = 0; e < HS; e++) o[size_t(e)] += p * vj[e], dp[size_t(j)] += double(gi[e]) * vj[e];
        }
        for (int64_t e = 0; e < HS; e++) Dr += double(gi[e]) * o[size_t(e)];
        for (int64_t j = 0; j < d.Tk; j++) {
          if (s[size_t(j)] == -INFINITY) continue;
          const double p = std::exp(s[size_t(j)] - L), ds = p * (dp[size_t(j)] - Dr);
          const size_t ko = size_t(((b * d.Tk + j) * d.NKV + h / G) * HS);
          for (int64_t e = 0; e < HS; e++) {
            dqi[size_t(e)] += scale * ds * k[ko + size_t(e)];
            dkd[ko + size_t(e)] += scale * ds * qi[e];
            dvd[ko + size_t(e)] += p * gi[e];
          }
        }
        for (int64_t e = 0; e < HS; e++) {
          out[size_t(((b * d.Tq + i) * d.NH + h) * HS + e)] = float(o[size_t(e)]);
          dq[size_t(((b * d.Tq + i) * d.NH + h) * HS + e)] = float(dqi[size_t(e)]);
        }
      }
  for (size_t x = 0; x < dk.size(); x++) dk[x] = float(dkd[x]), dv[x] = float(dvd[x]);
}

void test_attention() {
  const AttnCase cases[] = {
      // B Tq Tk NH NKV HS causal q_offset window docs
      {1, 1, 1, 1, 1, 1, true, 0, 0, 0},
      {2, 9, 9, 4, 2, 7, true, 0, 0, 0},
      {2, 9, 9, 4, 2, 7, true, 0, 3, 0},
      {1, 13, 20, 3, 1, 33, true, 7, 5, 0},
      {1, 13, 20, 3, 1, 33, true, 7, 0, 0},
      {2, 11, 11, 2, 2, 64, false, 0, 4, 0},
      {1, 11, 7, 2, 1, 65, false, 0, 0, 0},
      {1, 8, 16, 6, 3, 100, true, 8, 1, 0},
      {1, 6, 10, 2, 1, 256, true, -3, 2, 0},  // the first queries see no key
      {1, 10, 6, 2, 2, 130, true, 20, 3, 0},  // the window has passed every key for most queries
      {1, 7, 12, 4, 4, 170, false, 3, 4, 0},
      {1, 5, 9, 2, 1, 200, true, 4, 100, 0},  // window wider than the keys
      {2, 12, 12, 4, 1, 40, true, 0, 4, 1},
      {2, 12, 12, 4, 2, 40, true, 0, 0, 1},
      {1, 12, 15, 2, 1, 31, false, 3, 0, 2},
      {1, 12, 15, 2, 1, 31, true, 3, 6, 2},
      {1, 40, 40, 2, 1, 16, true, 0, 8, 0},    // many rows: the row-stride loop under caps
      {3, 24, 24, 8, 2, 128, true, 0, 7, 0},   // G = 4
      {1, 20, 70, 2, 1, 48, true, 50, 16, 1},  // a chunk's queries at the end of the keys, window and docs
      {1, 10, 6, 2, 1, 24, false, -4, 3, 0},   // non-causal window, negative q_offset
      {1, 5, 0, 2, 1, 8, true, 0, 0, 0},       // no keys: out = 0, lse = -inf, dq = 0
      {1, 0, 5, 2, 1, 8, true, 0, 3, 0},       // no queries: dk = dv = 0
  };
  for (const Caps& cap : kCaps) {
    set_caps(cap);
    for (const AttnCase& c : cases) {
      cpu::AttentionDims d;
      d.B = c.B, d.Tq = c.Tq, d.Tk = c.Tk, d.NH = c.NH, d.NKV = c.NKV, d.HS = c.HS;
      std::vector<int32_t> qdoc(size_t(c.B * c.Tq)), kdoc(size_t(c.B * c.Tk));
      if (c.docs) {  // sorted: runs of 1..5 tokens on the key axis, the queries at positions q_offset + i
        for (int64_t b = 0; b < c.B; b++) {
          std::vector<int32_t> at(size_t(std::max<int64_t>(c.Tk, c.q_offset + c.Tq) + 1));
          int32_t id = 0;
          for (size_t p = 0; p < at.size(); p++) {
            if (c.docs == 1 ? rng() % 4 == 0 : true) id = c.docs == 1 ? id + 1 : int32_t(rng() % 3);
            at[p] = id;
          }
          for (int64_t j = 0; j < c.Tk; j++) kdoc[size_t(b * c.Tk + j)] = at[size_t(j)];
          for (int64_t i = 0; i < c.Tq; i++)
            qdoc[size_t(b * c.Tq + i)] = at[size_t(std::max<int64_t>(0, c.q_offset + i))];
        }
      }
      cpu::AttentionMask m;
      m.causal = c.causal, m.q_offset = c.q_offset, m.window = c.window;
      if (c.docs) m.q_doc = qdoc.data(), m.k_doc = kdoc.data();
      const float scale = 1.f / std::sqrt(float(c.HS));
      const int64_t nq = c.B * c.Tq * c.NH * c.HS, nk = c.B * c.Tk * c.NKV * c.HS, nl = c.B * c.NH * c.Tq;
      F q = randv(nq, 1.5f), k = randv(nk, 1.5f), v = randv(nk), dout = randv(nq);
      const std::string tag =
          fmt("B=%ld Tq=%ld Tk=%ld NH=%ld NKV=%ld HS=%ld causal=%d q_offset=%ld window=%ld docs=%d %s",
              (long)c.B, (long)c.Tq, (long)c.Tk, (long)c.NH, (long)c.NKV, (long)c.HS, int(c.causal),
              (long)c.q_offset, (long)c.window, c.docs, cap.name);
      F out = nanv(nq), lse = nanv(nl), wout = nanv(nq), wlse = nanv(nl);
      cuda::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), d, m, scale, nullptr);
      cpu::attention_forward(wout.data(), wlse.data(), q.data(), k.data(), v.data(), d, m, scale);
      F rout, rlse, rdq, rdk, rdv;
      ref_attention(d, m, scale, q, k, v, dout, rout, rlse, rdq, rdk, rdv);
      cmp("attention_fwd out " + tag, out, wout, 1e-5, 1e-4);
      cmp("attention_fwd lse " + tag, lse, wlse, 5e-6, 5e-6);
      cmp("attention_fwd(vs double) out " + tag, out, rout, 1e-5, 1e-4);
      cmp("attention_fwd(vs double) lse " + tag, lse, rlse, 5e-6, 5e-6);
      F dq = nanv(nq), dk = nanv(nk), dv = nanv(nk), wdq = nanv(nq), wdk = nanv(nk), wdv = nanv(nk);
      F ws = nanv(int64_t(cuda::attention_backward_workspace_floats(d)));
      F cws = nanv(int64_t(cpu::attention_backward_workspace_floats(d)));
      // both from the CPU's forward (the same out and lse)
      cuda::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(),
                               wout.data(), wlse.data(), ws.data(), d, m, scale, nullptr);
      cpu::attention_backward(wdq.data(), wdk.data(), wdv.data(), dout.data(), q.data(), k.data(), v.data(),
                              wout.data(), wlse.data(), cws.data(), d, m, scale);
      cmp("attention_bwd dq " + tag, dq, wdq, 2e-5, 2e-4);
      cmp("attention_bwd dk " + tag, dk, wdk, 2e-5, 2e-4);
      cmp("attention_bwd dv " + tag, dv, wdv, 2e-5, 2e-4);
      cmp("attention_bwd(vs double) dq " + tag, dq, rdq, 2e-5, 2e-4);
      cmp("attention_bwd(vs double) dk " + tag, dk, rdk, 2e-5, 2e-4);
      cmp("attention_bwd(vs double) dv " + tag, dv, rdv, 2e-5, 2e-4);
      // deterministic: a second run (its own forward) gives the same bits
      F out2 = nanv(nq), lse2 = nanv(nl), dq2 = nanv(nq), dk2 = nanv(nk), dv2 = nanv(nk);
      cuda::attention_forward(out2.data(), lse2.data(), q.data(), k.data(), v.data(), d, m, scale, nullptr);
      cuda::attention_backward(dq2.data(), dk2.data(), dv2.data(), dout.data(), q.data(), k.data(), v.data(),
                               out.data(), lse.data(), ws.data(), d, m, scale, nullptr);
      cuda::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(),
                               out.data(), lse.data(), ws.data(), d, m, scale, nullptr);
      expect(same_bits(out.data(), out2.data(), 4 * size_t(nq)) &&
                 same_bits(lse.data(), lse2.data(), 4 * size_t(nl)) &&
                 same_bits(dq.data(), dq2.data(), 4 * size_t(nq)) &&
                 same_bits(dk.data(), dk2.data(), 4 * size_t(nk)) &&
                 same_bits(dv.data(), dv2.data(), 4 * size_t(nk)),
             "attention deterministic " + tag);
    }
    // merge of two parts against the CPU op's formula (ops/attention.cpp attention_merge)
    for (auto [B, Tq, NH, HS] :
         {std::array<int64_t, 4>{1, 1, 1, 1}, {2, 7, 3, 33}, {1, 30, 2, 0}, {1, 9, 4, 300}}) {
      const int64_t n = B * Tq * NH * HS, nl = B * NH * Tq;
      F o = randv(n), po = randv(n), l = randv(nl, 3.f), pl = randv(nl, 3.f);
      for (int64_t r = 0; r < nl; r += 3) (r % 2 ? l : pl)[size_t(r)] = -INFINITY;
      for (int64_t r = 0; r < nl; r += 5) l[size_t(r)] = pl[size_t(r)] = -INFINITY;
      F go = o, gl = l, wo = o, wl = l;
      cuda::attention_merge(go.data(), gl.data(), po.data(), pl.data(), B, Tq, NH, HS, nullptr);
      for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
          for (int64_t t = 0; t < Tq; t++) {
            const int64_t li = (b * NH + h) * Tq + t;
            const float x = wl[size_t(li)], y = pl[size_t(li)], mx = std::max(x, y);
            if (mx == -INFINITY) continue;
            const float wx = std::exp(x - mx), wy = std::exp(y - mx), s = wx + wy;
            for (int64_t e = 0; e < HS; e++) {
              float& r = wo[size_t(((b * Tq + t) * NH + h) * HS + e)];
              r = (r * wx + po[size_t(((b * Tq + t) * NH + h) * HS + e)] * wy) / s;
            }
            wl[size_t(li)] = mx + std::log(s);
          }
      const std::string tag =
          fmt("B=%ld Tq=%ld NH=%ld HS=%ld %s", (long)B, (long)Tq, (long)NH, (long)HS, cap.name);
      cmp("attention_merge out " + tag, go, wo, 1e-6, 1e-6);
      cmp("attention_merge lse " + tag, gl, wl, 1e-6, 1e-6);
    }
  }
  set_caps(kCaps[0]);
}
