#include "train/probe.h"

#include <algorithm>

#include "core/check.h"

namespace longctx {

namespace {

// The most earlier pages block l lets one chunk read (KvPages::first_page); -1: no limit.
int64_t page_reach(const LlamaConfig& c, int64_t Tc, int64_t l) {
  const int64_t w = c.window(l);
  return w <= 0 ? -1 : (w + Tc - 2) / Tc;
}

// sum over j = 0..k-1 of min(j, m) (m < 0: of j)
int64_t sum_pages(int64_t k, int64_t m) {
  if (m < 0 || m >= k - 1) return k * (k - 1) / 2;
  return m * (m + 1) / 2 + (k - 1 - m) * m;
}

int64_t blocks_of(const LlamaConfig& c, int64_t blocks) {
  return blocks < 0 ? c.num_hidden_layers : std::min(blocks, c.num_hidden_layers);
}

double share_of(const Plan& p, int64_t k) {
  return p.chunk_mode == ChunkMode::spaco ? std::min(1.0, double(p.chunk_budget) / double(k)) : 1.0;
}

}  // namespace

int64_t earlier_pages_read(const LlamaConfig& c, int64_t Tc, int64_t j, int64_t blocks) {
  CHECK(Tc >= 1 && j >= 0, "[probe] chunk ", j, " of ", Tc, " tokens");
  int64_t n = 0;
  for (int64_t l = 0; l < blocks_of(c, blocks); l++) {
    const int64_t m = page_reach(c, Tc, l);
    n += m < 0 ? j : std::min(j, m);
  }
  return n;
}

std::vector<int64_t> probe_chunks(int64_t k) {
  CHECK(k >= 1, "[probe] a step of ", k, " chunks");
  return k == 1 ? std::vector<int64_t>{0} : std::vector<int64_t>{0, k - 1};
}

double extrapolate_pass(const LlamaConfig& c, int64_t Tc, int64_t k, double first_s, double last_s,
                        int64_t blocks) {
  CHECK(k >= 1, "[probe] a step of ", k, " chunks");
  const int64_t last_pages = earlier_pages_read(c, Tc, k - 1, blocks);
  if (last_pages == 0) return double(k) * (first_s + last_s) / 2;
  int64_t all_pages = 0;  // over every chunk and block
  for (int64_t l = 0; l < blocks_of(c, blocks); l++) all_pages += sum_pages(k, page_reach(c, Tc, l));
  // t(j) = first_s + (last_s - first_s) * pages(j) / pages(k - 1), summed over j
  return double(k) * first_s + (last_s - first_s) * double(all_pages) / double(last_pages);
}

ProbeShape probe_shape(const ChunkedStep& s, const LlamaConfig& c) {
  const Plan& p = s.layout().plan;
  ProbeShape r;
  r.k = s.chunks(), r.Tc = s.layout().Tc;
  r.backward_share = share_of(p, r.k);
  r.forward_blocks = p.chunk_mode == ChunkMode::spaco ? c.num_hidden_layers : c.num_hidden_layers - 1;
  return r;
}

ProbeEstimate extrapolate_row(const LlamaConfig& c, const ProbeShape& s,
                              const ChunkedStep::ChunkTiming& first, const ChunkedStep::ChunkTiming& last) {
  CHECK(first.forward_s >= 0 && first.backward_s >= 0 && last.forward_s >= 0 && last.backward_s >= 0,
        "[probe] chunks 0 and ", s.k - 1, " must both have run forward and backward (seconds ",
        first.forward_s, ", ", first.backward_s, ", ", last.forward_s, ", ", last.backward_s, ")");
  ProbeEstimate e;
  e.forward_s = extrapolate_pass(c, s.Tc, s.k, first.forward_s, last.forward_s, s.forward_blocks);
  e.backward_s = s.backward_share * extrapolate_pass(c, s.Tc, s.k, first.backward_s, last.backward_s);
  return e;
}

uint64_t probe_draw(const ChunkedStep& s, const std::vector<int64_t>& chunks) {
  const double share = share_of(s.layout().plan, s.chunks());
  if (share >= 1) return 0;
  // each chunk is drawn with probability `share` on its own: expected tries share^-n; give up after 64 times
  // that (the chance to miss is then below e^-64), or after ~1e9 hash evaluations
  double expected = 1;
  for (size_t i = 0; i < chunks.size(); i++) expected /= share;
  const double cap = std::min(64 * expected, 1e9 / double(s.chunks()));
  for (uint64_t d = 0; double(d) < cap; d++) {
    const std::vector<int64_t> got = s.chosen_chunks(d);
    if (std::all_of(chunks.begin(), chunks.end(),
                    [&](int64_t j) { return std::binary_search(got.begin(), got.end(), j); }))
      return d;
  }
  FAIL("probe: SpaCO backpropagates ", s.layout().plan.chunk_budget, " of ", s.chunks(),
       " chunks per step; no draw within ", uint64_t(cap), " tries backpropagates chunks 0 and ",
       s.chunks() - 1, " both (raise --chunk-budget, or probe with --chunk-mode seco)");
}

}  // namespace longctx
