// Every memory plan (recompute policy x offload tier x MLP tiles x loss
// tiles) gives the loss and gradients of the plain step; the measured peak of
// every tier and tag equals `plan`'s prediction; bad plans are refused with
// errors that name the clashing choices.
#include <filesystem>

#include "harness.h"
#include "model/params.h"
#include "strategy/plan_search.h"
#include "train/any_step.h"
#include "train/host_stage.h"

namespace longctx::test {
namespace {

// Awkward sizes: nothing a power of two, GQA, untied head, odd T.
LlamaConfig awkward(int64_t layers = 3) {
  LlamaConfig c;
  c.vocab_size = 67, c.hidden_size = 40, c.intermediate_size = 72, c.num_hidden_layers = layers;
  c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 10, c.tie_word_embeddings = false;
  c.initializer_range = 0.2;
  c.validate();
  return c;
}

// The other families on the same awkward sizes: qwen3 (q/k norms, all four attention biases,
// head_dim 12 != 40 / 4, a sliding window on block 0 only, yarn), mistral (a window on every block),
// qwen2 (q/k/v biases, windows from block 1 on), llama with MLP biases; windows shorter than the rows
// and than a chunk plus its predecessor, so chunk pages and ring segments cut through them.
LlamaConfig family(const std::string& type, int64_t layers = 3) {
  LlamaConfig c = awkward(layers);
  c.model_type = type;
  if (type == "qwen3") {
    c.head_dim = 12, c.attention_bias = true, c.use_sliding_window = true, c.sliding_window = 9;
    c.layer_types.assign(size_t(layers), "full_attention");
    c.layer_types[0] = "sliding_attention";
    c.rope_scaling.type = "yarn", c.rope_scaling.factor = 4,
    c.rope_scaling.original_max_position_embeddings = 16;
  } else if (type == "mistral") {
    c.sliding_window = 11;
  } else if (type == "qwen2") {
    c.use_sliding_window = true, c.sliding_window = 13, c.max_window_layers = 1;
  } else {
    c.mlp_bias = true;
  }
  c.validate();
  return c;
}

struct Tokens {
  int64_t B, T;
  std::vector<int32_t> in, lab, pos, doc;
  StepInput input() {
    return {Tensor(in.data(), {B, T}, DType::I32), Tensor(lab.data(), {B, T}, DType::I32),
            Tensor(pos.data(), {B, T}, DType::I32),
            doc.empty() ? Tensor() : Tensor(doc.data(), {B, T}, DType::I32)};
  }
};
// Two packed documents per row (positions restart), some ignored labels.
Tokens tokens(int64_t B, int64_t T, int64_t V) {
  Tokens t{B, T, {}, {}, {}, {}};
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < T; i++) {
      const int64_t cut = T / 3 + b;
      t.in.push_back(int32_t((b * 31 + i * 7 + 3) % V));
      t.lab.push_back(i % 9 == 4 ? -100 : int32_t((b * 13 + i * 5 + 1) % V));
      t.pos.push_back(int32_t(i < cut ? i : i - cut));
      t.doc.push_back(i < cut ? 0 : 1);
    }
  return t;
}

struct Result {
  double loss;
  std::vector<float> grads;
};

Result run_plan(const LlamaConfig& c, const Plan& p, Tokens& tk, uint64_t draw = 0) {
  Memory mem;
  Context ctx = cpu_context(mem);
  ParamSet w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
  init_params_random(w, c, 11);
  if (c.model_type != "llama" || c.mlp_bias)  // biases and norms away from 0 and 1
    for (size_t i = 0; i < w.specs().size(); i++)
      if (w.specs()[i].shape.n == 1)
        for (int64_t j = 0; j < w.specs()[i].shape.numel(); j++)
          w.tensor(i).f32()[j] += 0.3f * std::sin(float(5 * j + i));
  AnyStep step(c, mem, tk.B, tk.T, p);
  g.zero();
  Result r;
  r.loss = step.run(w, g, tk.input(), ctx, 0, draw);
  r.grads.assign(g.all().f32(), g.all().f32() + g.all().numel());
  return r;
}

Plan plain() {
  Plan p;
  p.recompute = Recompute::none, p.offload = Offload::none, p.mlp_tiles = 1, p.loss_tiles = 1;
  return p;
}

TEST(Plan, EveryCombinationEqualsThePlainStep) {
  const LlamaConfig c = awkward();
  Tokens tk = tokens(2, 37, c.vocab_size);
  const Result ref = run_plan(c, plain(), tk);
  double gmax = 0;
  for (float v : ref.grads) gmax = std::max(gmax, double(std::fabs(v)));
  ASSERT_GT(gmax, 0);
  const std::string dir = ::testing::TempDir();
  int combos = 0;
  for (Recompute rc : {Recompute::none, Recompute::full, Recompute::selective})
    for (Offload off : {Offload::none, Offload::host, Offload::disk})
      for (int64_t mlp : {1, 3, 0})
        for (int64_t loss : {1, 5}) {
          Plan p;
          p.recompute = rc, p.offload = off, p.mlp_tiles = mlp, p.loss_tiles = loss;
          if (off == Offload::disk) p.offload_dir = dir;
          const Result r = run_plan(c, p, tk);
          SCOPED_TRACE(describe(p));
          EXPECT_NEAR(r.loss, ref.loss, 1e-5 * std::fabs(ref.loss));
          double worst = 0;
          for (size_t i = 0; i < r.grads.size(); i++)
            worst = std::max(worst, double(std::fabs(r.grads[i] - ref.grads[i])));
          EXPECT_LT(worst / gmax, 1e-5) << "largest gradient difference " << worst << " of " << gmax;
          combos++;
        }
  EXPECT_EQ(combos, 54);
}

// Allocates exactly what `longctx grad` does, runs one step, and holds every
// measured peak (tier and tag) against the prediction.
void expect_peaks_match(const LlamaConfig& c, const Plan& p, int64_t B, int64_t T) {
  Memory mem;
  Context ctx = cpu_context(mem);
  // the GPU's memory layout, as --device cpu-staged runs it: host code stages through host copies
  if (p.gpu_memory) mem.set_allocator(Tier::device, make_opaque_host_allocator());
  Tokens tk = tokens(B, T, c.vocab_size);
  Buffer in(mem, Tier::host, Tag::data, {B, T}, DType::I32),
      lab(mem, Tier::host, Tag::data, {B, T}, DType::I32);
  std::memcpy(in.t().ptr, tk.in.data(), in.t().bytes());
  std::memcpy(lab.t().ptr, tk.lab.data(), lab.t().bytes());
  ParamSet w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
  // through a host copy, as the commands load weights into GPU memory (the plan counts that copy)
  on_host(w, c, ctx, false, true, [&](ParamSet& h) { init_params_random(h, c, 3); });
  {
    AnyStep step(c, mem, B, T, p);
    step.run(w, g, StepInput{in.t(), lab.t(), Tensor(), Tensor()}, ctx);
  }
  const MemoryPrediction pred = predict_memory(c, p, B, T, Purpose::grad);
  SCOPED_TRACE(describe(p) + " B=" + std::to_string(B) + " T=" + std::to_string(T));
  for (Tag t : {Tag::weights, Tag::grads})  // parameters and gradients to the byte
    EXPECT_EQ(mem.tracker().tag(Tier::device, t).peak, pred.tag[size_t(Tier::device)][size_t(t)])
        << tag_name(t);
  for (int i = 0; i < kNumTiers; i++) {
    const int64_t got = mem.tracker().tier(Tier(i)).peak, want = pred.tier[size_t(i)];
    EXPECT_LE(std::abs(double(got - want)), 0.05 * double(want))
        << tier_name(Tier(i)) << ": measured " << got << " predicted " << want;
    for (int t = 0; t < kNumTags; t++) {
      const int64_t gt = mem.tracker().tag(Tier(i), Tag(t)).peak, wt = pred.tag[size_t(i)][size_t(t)];
      EXPECT_LE(std::abs(double(gt - wt)), 0.05 * double(wt))
          << tier_name(Tier(i)) << "/" << tag_name(Tag(t)) << ": measured " << gt << " predicted " << wt;
    }
  }
}

TEST(Plan, MeasuredPeaksMatchThePredictionOverAGrid) {
  const std::string dir = ::testing::TempDir();
  LlamaConfig wide = awkward(2);
  wide.vocab_size = 3001, wide.intermediate_size = 200;  // the loss tile dominates the workspace
  int cases = 0;
  for (const LlamaConfig& c : {awkward(1), awkward(3), wide})
    for (int64_t T : {19, 256, 1000})
      for (Recompute rc : {Recompute::none, Recompute::full, Recompute::selective})
        for (Offload off : {Offload::none, Offload::host, Offload::disk}) {
          Plan p;
          p.recompute = rc, p.offload = off, p.mlp_tiles = T > 100 ? 0 : 1, p.loss_tiles = T % 2 ? 0 : 4;
          if (off == Offload::disk) p.offload_dir = dir;
          expect_peaks_match(c, p, T > 500 ? 1 : 2, T);
          cases++;
        }
  EXPECT_EQ(cases, 81);
  for (int64_t T : {19, 300})
    for (Offload off : {Offload::none, Offload::host, Offload::disk})
      for (ChunkMode m : {ChunkMode::seco, ChunkMode::spaco}) {
        Plan p;
        p.chunk_mode = m, p.chunk_size = T / 3, p.offload = off,
        p.chunk_budget = m == ChunkMode::spaco ? 2 : 0;
        if (off == Offload::disk) p.offload_dir = dir;
        expect_peaks_match(awkward(2), p, 1, T);
      }
  // with the GPU's staging (host copies of the step's rows, pinned slots for disk, K/V page copies)
  for (Offload off : {Offload::none, Offload::host, Offload::disk})
    for (ChunkMode m : {ChunkMode::none, ChunkMode::seco}) {
      Plan p;
      p.gpu_memory = true, p.offload = off, p.chunk_mode = m, p.chunk_size = m == ChunkMode::seco ? 100 : 0;
      if (off == Offload::disk) p.offload_dir = dir;
      expect_peaks_match(awkward(3), p, 1, 300);
    }
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& ref) {
  double worst = 0, gmax = 0;
  for (size_t i = 0; i < a.size(); i++) {
    worst = std::max(worst, double(std::fabs(a[i] - ref[i])));
    gmax = std::max(gmax, double(std::fabs(ref[i])));
  }
  return worst / gmax;
}

// Labels only at the end of each row (the prompt ignored, as in answer-only
// fine-tuning): the last block runs on the suffix from the first label, and
// under every plan gives the whole block's loss and gradients. Also with no
// label at all, with packed documents or none, and with one block.
TEST(Plan, TheLastBlockOnTheLabeledSuffixEqualsTheWholeBlock) {
  const std::string dir = ::testing::TempDir();
  auto run = [&](const LlamaConfig& c, const Plan& p, Tokens& tk, bool suffix, int64_t want_S) {
    Memory mem;
    Context ctx = cpu_context(mem);
    ParamSet w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
    init_params_random(w, c, 11);
    GradStep step(c, mem, tk.B, tk.T, p);
    step.set_label_suffix(suffix);
    g.zero();
    Result r;
    r.loss = step.run(w, g, tk.input(), ctx);
    r.grads.assign(g.all().f32(), g.all().f32() + g.all().numel());
    EXPECT_EQ(step.suffix_rows(), suffix ? want_S : tk.T);
    return r;
  };
  int cases = 0;
  for (int64_t L : {1, 3})
    for (int labels : {0, 1, 2}) {  // first labels at 21, 30, 34; none; only the last token
      const LlamaConfig c = awkward(L);
      Tokens tk = tokens(3, 37, c.vocab_size);
      const int64_t first[3] = {21, 30, 34};
      for (int64_t b = 0; b < tk.B; b++)
        for (int64_t i = 0; i < tk.T; i++) {
          const bool keep = labels == 0 ? i >= first[b] : labels == 2 && i == tk.T - 1;
          if (!keep) tk.lab[size_t(b * tk.T + i)] = -100;
        }
      const int64_t S = labels == 0 ? 37 - 21 : 1;
      if (L == 1 && labels == 1) tk.doc.clear();  // no documents
      for (Recompute rc : {Recompute::none, Recompute::full, Recompute::selective})
        for (Offload off : {Offload::none, Offload::host, Offload::disk})
          for (int64_t mlp : {1, 3}) {
            Plan p;
            p.recompute = rc, p.offload = off, p.mlp_tiles = mlp, p.loss_tiles = mlp == 3 ? 2 : 1;
            if (off == Offload::disk) p.offload_dir = dir;
            SCOPED_TRACE(describe(p) + " L=" + std::to_string(L) + " labels=" + std::to_string(labels));
            Tokens t = tk;
            const Result ref = run(c, p, t, false, S), r = run(c, p, t, true, S);
            if (labels == 1) {  // no loss, no gradient, but the whole pass runs (ZeRO-3's gathers)
              EXPECT_EQ(r.loss, 0.0);
              EXPECT_EQ(*std::max_element(r.grads.begin(), r.grads.end()), 0.f);
              EXPECT_EQ(*std::min_element(r.grads.begin(), r.grads.end()), 0.f);
            } else {
              EXPECT_NEAR(r.loss, ref.loss, 1e-5 * std::fabs(ref.loss));
              EXPECT_LT(max_rel_diff(r.grads, ref.grads), 1e-5);
            }
            cases++;
          }
    }
  EXPECT_EQ(cases, 108);
}

// The suffix pass of the last block with q/k norms (qwen3: norm rows cut to the suffix), biases and a
// window in the last block (mistral, qwen2): the whole block's loss and gradients.
TEST(Plan, TheFamiliesLastBlockOnTheLabeledSuffixEqualsTheWholeBlock) {
  for (const char* type : {"qwen3", "mistral", "qwen2"}) {
    const LlamaConfig c = family(type);
    Tokens tk = tokens(2, 37, c.vocab_size);
    for (int64_t b = 0; b < tk.B; b++)
      for (int64_t i = 0; i < 21 + 4 * b; i++) tk.lab[size_t(b * tk.T + i)] = -100;
    for (Recompute rc : {Recompute::none, Recompute::selective}) {
      Plan p = plain();
      p.recompute = rc, p.mlp_tiles = rc == Recompute::none ? 1 : 3;
      SCOPED_TRACE(std::string(type) + " " + describe(p));
      Result r[2];
      for (int suffix : {0, 1}) {
        Memory mem;
        Context ctx = cpu_context(mem);
        ParamSet w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
        init_params_random(w, c, 11);
        for (size_t i = 0; i < w.specs().size(); i++)
          if (w.specs()[i].shape.n == 1)
            for (int64_t j = 0; j < w.specs()[i].shape.numel(); j++)
              w.tensor(i).f32()[j] += 0.2f * std::cos(float(j));
        GradStep step(c, mem, tk.B, tk.T, p);
        step.set_label_suffix(suffix == 1);
        g.zero();
        r[suffix].loss = step.run(w, g, tk.input(), ctx);
        r[suffix].grads.assign(g.all().f32(), g.all().f32() + g.all().numel());
        EXPECT_EQ(step.suffix_rows(), suffix ? 37 - 21 : 37);
      }
      EXPECT_NEAR(r[1].loss, r[0].loss, 1e-5 * std::fabs(r[0].loss));
      EXPECT_LT(max_rel_diff(r[1].grads, r[0].grads), 1e-5);
    }
  }
}

TEST(Plan, SecoEqualsThePlainStepWithEveryPlanInsideTheChunks) {
  const LlamaConfig c = awkward();
  Tokens tk = tokens(1, 37, c.vocab_size);
  const Result ref = run_plan(c, plain(), tk);
  const std::string dir = ::testing::TempDir();
  int combos = 0;
  for (int64_t chunk : {1, 8, 13, 37})  // 37 tokens in 37, 5 (padded), 3 (padded) and 1 chunk(s)
    for (Recompute rc : {Recompute::none, Recompute::full, Recompute::selective})
      for (Offload off : {Offload::none, Offload::host, Offload::disk}) {
        if (chunk == 1 && off != Offload::none) continue;  // 37 one-token pages: slow through the copy thread
        Plan p;
        p.chunk_mode = ChunkMode::seco, p.chunk_size = chunk, p.recompute = rc, p.offload = off;
        p.mlp_tiles = chunk >= 8 ? 2 : 1, p.loss_tiles = chunk >= 8 ? 3 : 0;
        if (off == Offload::disk) p.offload_dir = dir;
        SCOPED_TRACE(describe(p));
        const Result r = run_plan(c, p, tk);
        EXPECT_NEAR(r.loss, ref.loss, 1e-5 * std::fabs(ref.loss));
        EXPECT_LT(max_rel_diff(r.grads, ref.grads), 1e-5);
        combos++;
      }
  EXPECT_EQ(combos, 30);
}

TEST(Plan, SpacoIsUnbiasedAndItsErrorFallsAsOneOverRootDraws) {
  const LlamaConfig c = awkward(2);
  Tokens tk = tokens(1, 30, c.vocab_size);
  const Result exact = run_plan(c, plain(), tk);
  Plan p;
  p.chunk_mode = ChunkMode::spaco, p.chunk_size = 6, p.chunk_budget = 2;  // 5 chunks, 2 on average
  std::vector<double> sum(exact.grads.size(), 0.0);
  auto error_after = [&](uint64_t from, uint64_t to) {
    for (uint64_t d = from; d < to; d++) {
      const Result r = run_plan(c, p, tk, d);
      EXPECT_NEAR(r.loss, exact.loss, 1e-5 * exact.loss) << "the logged loss is the full forward's";
      for (size_t i = 0; i < sum.size(); i++) sum[i] += r.grads[i];
    }
    double e = 0, n = 0;
    for (size_t i = 0; i < sum.size(); i++) {
      const double m = sum[i] / double(to);
      e += (m - exact.grads[i]) * (m - exact.grads[i]), n += double(exact.grads[i]) * exact.grads[i];
    }
    return std::sqrt(e / n);
  };
  const double e16 = error_after(0, 16), e256 = error_after(16, 256), e1024 = error_after(256, 1024);
  std::printf("SpaCO relative error of the mean gradient: 16 draws %.4f, 256 draws %.4f, 1024 draws %.4f\n",
              e16, e256, e1024);
  // 1/sqrt(draws): 4x fewer error for 16x the draws, 2x for 4x (with slack for noise)
  EXPECT_LT(e256, e16 / 2.5);
  EXPECT_LT(e1024, e256 / 1.4);
  EXPECT_LT(e1024, 0.1);
}

// Every family under the plans and chunk modes: the plain step's loss and gradients (windows that
// chunk pages cut, q/k norms kept by selective recompute, biases in tiled MLPs).
TEST(Plan, TheFamiliesGiveThePlainStepUnderEveryPlanAndChunkMode) {
  const std::string dir = ::testing::TempDir();
  int combos = 0;
  for (const char* type : {"qwen3", "mistral", "qwen2", "llama"}) {
    const LlamaConfig c = family(type);
    for (int64_t B : {2, 1}) {
      Tokens tk = tokens(B, 37, c.vocab_size);
      const Result ref = run_plan(c, plain(), tk);
      std::vector<Plan> plans;
      for (Recompute rc : {Recompute::none, Recompute::full, Recompute::selective})
        for (Offload off : {Offload::none, Offload::host, Offload::disk}) {
          Plan p;
          p.recompute = rc, p.offload = off, p.mlp_tiles = off == Offload::host ? 3 : 1;
          p.loss_tiles = rc == Recompute::full ? 5 : 0;
          if (off == Offload::disk) p.offload_dir = dir;
          if (B == 2) plans.push_back(p);
          for (int64_t chunk : {8, 13}) {  // SeCO: 5 and 3 chunks (the last padded)
            if (B == 2 || (rc == Recompute::none && off == Offload::disk)) continue;
            p.chunk_mode = ChunkMode::seco, p.chunk_size = chunk, p.mlp_tiles = 1;
            plans.push_back(p);
          }
        }
      for (const Plan& p : plans) {
        SCOPED_TRACE(std::string(type) + " " + describe(p));
        const Result r = run_plan(c, p, tk);
        EXPECT_NEAR(r.loss, ref.loss, 1e-5 * std::fabs(ref.loss));
        EXPECT_LT(max_rel_diff(r.grads, ref.grads), 1e-5);
        combos++;
      }
      if (B == 1) {  // SpaCO logs the whole forward's loss
        Plan p;
        p.chunk_mode = ChunkMode::spaco, p.chunk_size = 8, p.chunk_budget = 2;
        EXPECT_NEAR(run_plan(c, p, tk, 3).loss, ref.loss, 1e-5 * std::fabs(ref.loss)) << type;
      }
    }
  }
  EXPECT_EQ(combos, 4 * (9 + 16));
}

// SeCO reads no K/V page that lies wholly outside a block's sliding window (forward, recompute and
// backward alike), and still gives the plain step. mistral's window 11 with chunks of 4 (10 chunks, the
// last padded): chunk j reads pages j-3..j-1, 24 pages a pass against 45 without the window.
TEST(Plan, SecoSkipsThePagesOutsideTheSlidingWindow) {
  const std::string dir = ::testing::TempDir();
  const LlamaConfig windowed = family("mistral");
  LlamaConfig whole = windowed;
  whole.sliding_window = 0;
  Tokens tk = tokens(1, 37, windowed.vocab_size);
  const Result ref = run_plan(windowed, plain(), tk);
  for (Offload off : {Offload::none, Offload::host, Offload::disk}) {
    Plan p = plain();
    p.chunk_mode = ChunkMode::seco, p.chunk_size = 4, p.offload = off;
    if (off == Offload::disk) p.offload_dir = dir;
    SCOPED_TRACE(describe(p));
    EXPECT_LT(max_rel_diff(run_plan(windowed, p, tk).grads, ref.grads), 1e-5);
    int64_t reads[2];
    for (int w = 0; w < 2; w++) {
      const LlamaConfig& c = w == 0 ? windowed : whole;
      Memory mem;
      Context ctx = cpu_context(mem);
      ParamSet wt(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
      init_params_random(wt, c, 11);
      g.zero();
      ChunkedStep step(c, mem, tk.T, p);
      step.run(wt, Grads{&g, nullptr}, tk.input(), ctx);
      reads[w] = step.kv_pages_read();
    }
    EXPECT_GT(reads[1], 0);
    EXPECT_EQ(reads[0] * 45, reads[1] * 24)
        << reads[0] << " pages read with the window, " << reads[1] << " without";
  }
}

// The K/V cache in bf16 (kv_dtype bf16; the GPU's default with bf16 math), and its gradients in bf16 too
// (kv_grad_dtype bf16, rounded after every addition): half the bytes of each, as predicted, and the step
// within bf16's rounding of the fp32 one, on every tier (pages in the GPU's memory layout: the peaks).
TEST(Plan, Bf16KvPagesHalveTheCacheWithinBf16Rounding) {
  const std::string dir = ::testing::TempDir();
  const LlamaConfig c = family("mistral");  // a window, so that pages are skipped as well
  Tokens tk = tokens(1, 37, c.vocab_size);
  const Result ref = run_plan(c, plain(), tk);
  for (bool grads : {false, true})
    for (Offload off : {Offload::none, Offload::host, Offload::disk})
      for (bool gpu : {false, true}) {
        Plan p = plain();
        p.chunk_mode = ChunkMode::seco, p.chunk_size = 8, p.offload = off, p.gpu_memory = gpu;
        p.kv_dtype = Plan::KvDtype::bf16;
        if (grads) p.kv_grad_dtype = Plan::KvDtype::bf16;
        if (off == Offload::disk) p.offload_dir = dir;
        SCOPED_TRACE(describe(p) + (gpu ? " (GPU memory layout)" : ""));
        if (!gpu) {
          const Result r = run_plan(c, p, tk);
          const double e = max_rel_diff(r.grads, ref.grads);
          std::printf("%s: largest gradient difference %.2e of the largest gradient\n", describe(p).c_str(),
                      e);
          EXPECT_GT(e, 0) << "the pages were rounded";
          EXPECT_LT(e, 2e-2);
          EXPECT_NEAR(r.loss, ref.loss, 1e-2 * std::fabs(ref.loss));
        }
        expect_peaks_match(c, p, 1, 37);
        Plan f = p;
        f.kv_dtype = f.kv_grad_dtype = Plan::KvDtype::fp32;
        const MemoryPrediction a = predict_memory(c, p, 1, 37, Purpose::grad),
                               b = predict_memory(c, f, 1, 37, Purpose::grad);
        const size_t t = size_t(off == Offload::none   ? Tier::device
                                : off == Offload::host ? Tier::host
                                                       : Tier::disk);
        if (off != Offload::none && !gpu) {  // (the GPU's layout adds fixed host copies of a page)
          EXPECT_EQ(2 * a.tag[t][size_t(Tag::kv_cache)], b.tag[t][size_t(Tag::kv_cache)]);
          EXPECT_EQ((grads ? 2 : 1) * a.tag[t][size_t(Tag::kv_grad)], b.tag[t][size_t(Tag::kv_grad)]);
        }
      }
}

// The new parameters (biases, q/k norms) and their gradients and AdamW moments, to the byte: the table
// counted by hand, the ParamSet as allocated, the prediction against a step's measured peaks.
TEST(Plan, TheFamiliesParametersAreCountedToTheByte) {
  const std::string dir = ::testing::TempDir();
  for (const char* type : {"qwen3", "mistral", "qwen2", "llama"}) {
    SCOPED_TRACE(type);
    const LlamaConfig c = family(type, 2);
    const int64_t C = c.hidden_size, F = c.intermediate_size, Cq = c.q_dim(), Ckv = c.kv_dim(),
                  V = c.vocab_size;
    const std::string t = type;
    const int64_t extra = t == "qwen3"   ? Cq + 2 * Ckv + C + 2 * c.head_dim
                          : t == "qwen2" ? Cq + 2 * Ckv
                          : t == "llama" ? 2 * F + C
                                         : 0;
    const int64_t per_layer = 2 * C * Cq + 2 * C * Ckv + 3 * C * F + 2 * C + extra;
    int64_t numel = 0, padded = 0;
    for (const ParamSpec& s : llama_param_table(c))
      numel += s.shape.numel(), padded += (s.shape.numel() + 15) / 16 * 16;
    EXPECT_EQ(numel, 2 * V * C + C + c.num_hidden_layers * per_layer);
    EXPECT_EQ(param_bytes(c), 4 * padded);
    {
      Memory mem;
      ParamSet w(c, mem, Tier::device, Tag::weights);
      EXPECT_EQ(mem.tracker().tag(Tier::device, Tag::weights).current, param_bytes(c));
    }
    for (Purpose why : {Purpose::grad, Purpose::train}) {
      const MemoryPrediction m = predict_memory(c, plain(), 1, 64, why);
      EXPECT_EQ(m.tag[size_t(Tier::device)][size_t(Tag::weights)], param_bytes(c));
      EXPECT_EQ(m.tag[size_t(Tier::device)][size_t(Tag::grads)], param_bytes(c));
      EXPECT_EQ(m.tag[size_t(Tier::device)][size_t(Tag::optim)],
                why == Purpose::train ? 2 * param_bytes(c) : 0);
    }
    // LoRA: the base (biases and norms included) frozen, only the adapters trained
    Plan lp = plain();
    lp.lora.rank = 2;
    const MemoryPrediction ml = predict_memory(c, lp, 1, 64, Purpose::train);
    EXPECT_EQ(ml.tag[size_t(Tier::device)][size_t(Tag::grads)], lora_param_bytes(c, lp.lora));
    EXPECT_EQ(ml.tag[size_t(Tier::device)][size_t(Tag::optim)], 2 * lora_param_bytes(c, lp.lora));
    // measured against predicted, every tier and tag, over plans that keep, drop and offload the q/k rows
    for (Recompute rc : {Recompute::none, Recompute::selective, Recompute::full}) {
      Plan p;
      p.recompute = rc, p.offload = rc == Recompute::full ? Offload::disk : Offload::host;
      p.mlp_tiles = rc == Recompute::none ? 1 : 0;
      if (p.offload == Offload::disk) p.offload_dir = dir;
      expect_peaks_match(c, p, 2, 100);
    }
    Plan sc;
    sc.chunk_mode = ChunkMode::seco, sc.chunk_size = 32, sc.offload = Offload::host;
    expect_peaks_match(c, sc, 1, 100);
  }
}

TEST(Plan, EachTechniqueSavesWhatItShould) {
  const LlamaConfig c = awkward(4);
  const int64_t T = 2048;
  auto dev = [&](Plan p) { return predict_memory(c, p, 1, T, Purpose::grad).tier[size_t(Tier::device)]; };
  Plan none = plain(), full = plain(), sel = plain(), host = plain(), tiled = plain();
  full.recompute = Recompute::full, sel.recompute = Recompute::selective;
  host.recompute = Recompute::full, host.offload = Offload::host;
  tiled.recompute = Recompute::full, tiled.offload = Offload::host, tiled.mlp_tiles = 0;
  EXPECT_LT(dev(full), dev(sel));
  EXPECT_LT(dev(sel), dev(none));
  EXPECT_LT(dev(host), dev(full));
  EXPECT_LT(dev(tiled), dev(host));
  const MemoryPrediction h = predict_memory(c, host, 1, T, Purpose::grad);
  EXPECT_EQ(h.tag[size_t(Tier::host)][size_t(Tag::checkpoint)], 3 * T * c.hidden_size * 4);  // L-1 inputs
}

TEST(Plan, ClashesAndImpossibleChoicesAreNamed) {
  Plan p;
  p.offload_dir = "/tmp";
  expect_error([&] { validate_plan(p, 1, 64); }, {"--offload-dir", "--offload none"});
  p = Plan{};
  p.chunk_size = 16;
  expect_error([&] { validate_plan(p, 1, 64); }, {"--chunk-size", "--chunk-mode none"});
  p = Plan{};
  p.chunk_mode = ChunkMode::seco, p.chunk_budget = 2;
  expect_error([&] { validate_plan(p, 1, 64); }, {"--chunk-budget", "seco"});
  p = Plan{};
  p.mlp_tiles = 100;
  expect_error([&] { validate_plan(p, 1, 64); }, {"--mlp-tiles 100", "64 rows"});
  p = Plan{};
  p.chunk_mode = ChunkMode::seco, p.chunk_size = 16;
  validate_plan(p, 2, 64);  // chunk modes take any batch: the rows run one after another
  p.mlp_tiles = 17;         // ... so the MLP sees one chunk of one row
  expect_error([&] { validate_plan(p, 2, 64); }, {"--mlp-tiles 17", "16 rows"});
  expect_error([] { parse_recompute("some"); }, {"'some'", "none|full|selective"});
  expect_error([] { parse_tiles("mlp-tiles", "0"); }, {"mlp-tiles", "'0'"});
  Plan q;
  EXPECT_TRUE(set_plan_key(q, "offload", "host"));
  EXPECT_FALSE(set_plan_key(q, "offlaod", "host"));
  // "auto" once read as rank 0: LoRA silently off
  expect_error([&] { set_plan_key(q, "lora_rank", "auto"); }, {"lora-rank", "'auto'", "0 for no LoRA"});
  EXPECT_TRUE(set_plan_key(q, "lora_rank", "0"));
  EXPECT_FALSE(q.lora.enabled());
}

TEST(Plan, APlanThatCannotFitIsRefusedWithTheNearestThatDoes) {
  const LlamaConfig c = awkward(4);
  Plan p = plain();
  const int64_t T = 4096;
  const int64_t need = predict_memory(c, p, 1, T, Purpose::grad).tier[0];
  p.device_mem = need * 2 / 3;
  expect_error([&] { choose_plan(c, p, false, 1, T, Purpose::grad); },
               {"cannot fit", "device needs", "nearest plan that fits"});
  const Plan a = choose_plan(c, p, true, 1, T, Purpose::grad);
  EXPECT_LE(predict_memory(c, a, 1, T, Purpose::grad).tier[0], p.device_mem) << describe(a);
}

}  // namespace
}  // namespace longctx::test
