// Probe mode (`grad --probe`): the pages a chunk reads as the probe counts them are the pages the step
// reads; the extrapolation is exact when chunk costs are linear in those pages; SpaCO's probe draw
// backpropagates the probed chunks, and only they run.
#include "harness.h"
#include "model/params.h"
#include "train/chunked_step.h"
#include "train/probe.h"

namespace longctx::test {
namespace {

LlamaConfig small(const std::string& type) {
  LlamaConfig c;
  c.vocab_size = 67, c.hidden_size = 40, c.intermediate_size = 72, c.num_hidden_layers = 3;
  c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 10, c.tie_word_embeddings = false;
  c.initializer_range = 0.2;
  c.model_type = type;
  if (type == "mistral") c.sliding_window = 11;  // every block
  if (type == "qwen2") c.use_sliding_window = true, c.sliding_window = 13, c.max_window_layers = 1;
  if (type == "qwen3") {  // block 0 only
    c.use_sliding_window = true, c.sliding_window = 9;
    c.layer_types.assign(3, "full_attention");
    c.layer_types[0] = "sliding_attention";
  }
  c.validate();
  return c;
}

Plan chunked(ChunkMode m, int64_t Tc, int64_t budget = 0) {
  Plan p;
  p.recompute = Recompute::none, p.offload = Offload::none, p.mlp_tiles = 1, p.loss_tiles = 1;
  p.chunk_mode = m, p.chunk_size = Tc, p.chunk_budget = budget;
  return p;
}

struct Fixture {
  LlamaConfig c;
  Memory mem;
  Context ctx = cpu_context(mem);
  ParamSet w, g;
  std::vector<int32_t> in, lab;
  Fixture(const LlamaConfig& cfg, int64_t T)
      : c(cfg), w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads) {
    init_params_random(w, c, 11);
    g.zero();
    for (int64_t i = 0; i < T; i++) {
      in.push_back(int32_t((i * 7 + 3) % c.vocab_size));
      lab.push_back(int32_t((i * 5 + 1) % c.vocab_size));
    }
  }
  StepInput input() {
    const int64_t T = int64_t(in.size());
    return {Tensor(in.data(), {1, T}, DType::I32), Tensor(lab.data(), {1, T}, DType::I32), Tensor(),
            Tensor()};
  }
};

TEST(Probe, TheFirstAndTheLastChunk) {
  EXPECT_EQ(probe_chunks(1), (std::vector<int64_t>{0}));
  EXPECT_EQ(probe_chunks(8), (std::vector<int64_t>{0, 7}));
}

// Without a window chunk j reads j pages per block; mistral's window of 11 with chunks of 4 lets a chunk
// read at most (11 + 4 - 2) / 4 = 3 earlier pages per block; qwen2 windows blocks 1 and 2, qwen3 block 0.
TEST(Probe, PagesPerChunkFollowTheWindows) {
  for (int64_t j : {0, 1, 2, 3, 4, 9}) {
    EXPECT_EQ(earlier_pages_read(small("llama"), 4, j), 3 * j);
    EXPECT_EQ(earlier_pages_read(small("llama"), 4, j, 2), 2 * j);
    EXPECT_EQ(earlier_pages_read(small("mistral"), 4, j), 3 * std::min<int64_t>(j, 3));
    EXPECT_EQ(earlier_pages_read(small("qwen2"), 4, j), j + 2 * std::min<int64_t>(j, 3));  // (13+2)/4 = 3
    EXPECT_EQ(earlier_pages_read(small("qwen3"), 4, j), std::min<int64_t>(j, 2) + 2 * j);  // (9+2)/4 = 2
  }
}

// With t(j) = a + b * pages(j), the extrapolation from t(0) and t(k-1) is the sum over all chunks, for
// every window layout, chunk count and number of blocks; without windows it is k * (t(0) + t(k-1)) / 2.
TEST(Probe, ExtrapolationIsExactForCostsLinearInPages) {
  for (const std::string type : {"llama", "mistral", "qwen2", "qwen3"}) {
    const LlamaConfig c = small(type);
    for (int64_t k : {1, 2, 3, 8, 37})
      for (int64_t blocks : {-1, 2}) {
        SCOPED_TRACE(type + " k=" + std::to_string(k) + " blocks=" + std::to_string(blocks));
        const double a = 0.3, b = 0.021;
        double sum = 0;
        for (int64_t j = 0; j < k; j++) sum += a + b * double(earlier_pages_read(c, 4, j, blocks));
        const double first = a, last = a + b * double(earlier_pages_read(c, 4, k - 1, blocks));
        EXPECT_NEAR(extrapolate_pass(c, 4, k, first, last, blocks), sum, 1e-9 * sum);
        if (type == "llama") {
          EXPECT_NEAR(sum, double(k) * (first + last) / 2, 1e-9 * sum);
        }
      }
  }
  // no earlier page is ever read: every chunk costs the mean of the two measured
  EXPECT_DOUBLE_EQ(extrapolate_pass(small("llama"), 4, 5, 1.0, 3.0, 0), 10.0);
}

// The probe's page counts are the step's: running chunk j alone (forward, then its rerun with grad) reads
// the first pass's pages (blocks 0..L-2 under SeCO, whose first pass stops at the last block's K/V; all
// blocks under SpaCO) plus a whole number of times every block's pages in the rerun.
TEST(Probe, PagesCountedAreThePagesTheStepReads) {
  for (const std::string type : {"llama", "mistral", "qwen2", "qwen3"})
    for (ChunkMode m : {ChunkMode::seco, ChunkMode::spaco}) {
      SCOPED_TRACE(type + (m == ChunkMode::seco ? " seco" : " spaco"));
      Fixture f(small(type), 37);  // 10 chunks of 4, the last padded
      ChunkedStep step(f.c, f.mem, 37, chunked(m, 4, m == ChunkMode::spaco ? 10 : 0));
      ASSERT_EQ(step.chunks(), 10);
      const ProbeShape s = probe_shape(step, f.c);
      EXPECT_EQ(s.forward_blocks, m == ChunkMode::seco ? 2 : 3);
      EXPECT_EQ(s.backward_share, 1.0);
      int64_t before = 0, reruns = -1;
      for (int64_t j = 0; j < 10; j++) {
        step.set_only_chunks({j});
        step.run(f.w, Grads{&f.g, nullptr}, f.input(), f.ctx);
        const int64_t read = step.kv_pages_read() - before;
        before = step.kv_pages_read();
        const int64_t first = earlier_pages_read(f.c, 4, j, s.forward_blocks);
        const int64_t all = earlier_pages_read(f.c, 4, j);
        if (j == 0) {
          EXPECT_EQ(read, 0);
          continue;
        }
        ASSERT_GT(all, 0);
        ASSERT_EQ((read - first) % all, 0) << "chunk " << j << " read " << read << " pages";
        if (reruns < 0) reruns = (read - first) / all;
        EXPECT_GE(reruns, 1);
        EXPECT_EQ(read, first + reruns * all) << "chunk " << j;
      }
    }
}

// SpaCO: the probe's draw backpropagates chunks 0 and k-1; only they run, forward and backward.
TEST(Probe, SpacoDrawBackpropagatesTheProbedChunks) {
  Fixture f(small("llama"), 32);
  ChunkedStep step(f.c, f.mem, 32, chunked(ChunkMode::spaco, 4, 2));
  ASSERT_EQ(step.chunks(), 8);
  EXPECT_DOUBLE_EQ(probe_shape(step, f.c).backward_share, 0.25);
  const std::vector<int64_t> pc = probe_chunks(8);
  const uint64_t d = probe_draw(step, pc);
  const std::vector<int64_t> got = step.chosen_chunks(d);
  EXPECT_TRUE(std::binary_search(got.begin(), got.end(), 0)) << "draw " << d;
  EXPECT_TRUE(std::binary_search(got.begin(), got.end(), 7)) << "draw " << d;
  step.set_only_chunks(pc);
  step.run(f.w, Grads{&f.g, nullptr}, f.input(), f.ctx, 0, d);
  const auto& tm = step.chunk_timings();
  ASSERT_EQ(tm.size(), 8u);
  for (int64_t j = 0; j < 8; j++) {
    const bool probed = j == 0 || j == 7;
    EXPECT_EQ(tm[size_t(j)].forward_s >= 0, probed) << "chunk " << j;
    EXPECT_EQ(tm[size_t(j)].backward_s >= 0, probed) << "chunk " << j;
  }
  const ProbeEstimate e = extrapolate_row(f.c, probe_shape(step, f.c), tm[0], tm[7]);
  EXPECT_GT(e.forward_s, 0);
  EXPECT_GT(e.backward_s, 0);
  // SeCO backpropagates every chunk for draw 0
  ChunkedStep seco(f.c, f.mem, 32, chunked(ChunkMode::seco, 4));
  EXPECT_EQ(probe_draw(seco, pc), 0u);
  // a chunk that did not run cannot be extrapolated from
  expect_error([&] { extrapolate_row(f.c, probe_shape(step, f.c), tm[0], tm[3]); }, {"[probe]", "must both"});
}

}  // namespace
}  // namespace longctx::test
