// Probe mode of a chunked step (`longctx grad --probe`): for a length whose
// whole step takes longer than one can wait, the step is built for the full
// length (every tier holds what the full step holds), only its first and last
// chunks run forward and backward, and the whole step's time is extrapolated
// from theirs.
//
// The model: a chunk's forward (and, separately, its backward) costs a fixed
// part (its own rows through every block, its own K/V page, the LM head) plus
// a part linear in the earlier K/V pages its attention reads, summed over the
// blocks. Chunk 0 reads none, chunk k-1 the most, so the two measurements fix
// both parts. A block with a sliding window reads at most
// (window + Tc - 2) / Tc earlier pages (KvPages::first_page), so the pages per
// chunk saturate and so does the cost. SpaCO backpropagates each chunk with
// probability budget / k: its backward is the expectation.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "train/chunked_step.h"

namespace longctx {

// Earlier K/V pages chunk j's queries read, summed over blocks 0..blocks-1 (chunks of Tc tokens; a block
// with a sliding window skips the pages wholly outside it). blocks < 0: every block.
int64_t earlier_pages_read(const LlamaConfig& c, int64_t Tc, int64_t j, int64_t blocks = -1);

// The chunks a probe runs: the first and the last (one chunk: just it).
std::vector<int64_t> probe_chunks(int64_t k);

// One pass (forward or backward) over all k chunks, extrapolated from chunk 0's seconds and chunk k-1's by
// the linear model above, attention running in blocks 0..blocks-1 (< 0: all). When no chunk reads an
// earlier page (k = 1, or windows shorter than 2 tokens) every chunk costs the same: k times the mean of
// the two.
double extrapolate_pass(const LlamaConfig& c, int64_t Tc, int64_t k, double first_s, double last_s,
                        int64_t blocks = -1);

struct ProbeEstimate {
  double forward_s = 0, backward_s = 0;  // of one row's k chunks
  double chunks_s() const { return forward_s + backward_s; }
};

// How a chunked step spends its passes, as the extrapolation needs it.
struct ProbeShape {
  int64_t k = 1, Tc = 1;        // chunks, tokens per chunk
  double backward_share = 1;    // expected fraction of chunks backpropagated (SeCO 1, SpaCO min(1, s / k))
  int64_t forward_blocks = -1;  // blocks whose attention the first pass runs (SeCO's stops at the last
                                // block's K/V: L - 1; SpaCO's takes the loss: all); reruns run every block
};
ProbeShape probe_shape(const ChunkedStep& s, const LlamaConfig& c);

// One row's chunks, from the timings of chunk 0 and chunk k-1 (both must have run forward and backward).
ProbeEstimate extrapolate_row(const LlamaConfig& c, const ProbeShape& s,
                              const ChunkedStep::ChunkTiming& first, const ChunkedStep::ChunkTiming& last);

// A `draw` for which the step backpropagates every one of `chunks` (SeCO: 0, which backpropagates all;
// SpaCO: the first draw whose random choice includes them, so the probe times their backward).
uint64_t probe_draw(const ChunkedStep& s, const std::vector<int64_t>& chunks);

}  // namespace longctx
