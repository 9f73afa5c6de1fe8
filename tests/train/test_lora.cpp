// LoRA: adapter gradients equal the chain rule through the merged weight
// (dB = s G A^T, dA = s B^T G with G the merged model's weight gradient),
// the same under every memory plan, nothing computed for the frozen base,
// PEFT names and files, and merging.
#include <filesystem>

#include "harness.h"
#include "model/llama_io.h"
#include "model/params.h"
#include "strategy/memory_model.h"
#include "train/any_step.h"
#include "train/checkpoint.h"

namespace longctx::test {
namespace {

LlamaConfig small() {
  LlamaConfig c;
  c.vocab_size = 53, c.hidden_size = 24, c.intermediate_size = 40, c.num_hidden_layers = 2;
  c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 6, c.tie_word_embeddings = false;
  c.initializer_range = 0.3;
  c.validate();
  return c;
}

LoraConfig every_target() {
  LoraConfig lc;
  lc.rank = 3, lc.alpha = 6;
  lc.targets = lora_target_names();
  return lc;
}

struct Tok {
  std::vector<int32_t> in, lab;
  StepInput input(int64_t T) {
    return {Tensor(in.data(), {1, T}, DType::I32), Tensor(lab.data(), {1, T}, DType::I32), Tensor(),
            Tensor()};
  }
};
Tok tokens(int64_t T, int64_t V) {
  Tok t;
  for (int64_t i = 0; i < T; i++) {
    t.in.push_back(int32_t((i * 11 + 5) % V));
    t.lab.push_back(i % 7 == 3 ? -100 : int32_t((i * 3 + 2) % V));
  }
  return t;
}

// Adapters with B != 0 so that every gradient path is exercised.
void random_adapters(LoraSet& a, uint64_t seed) {
  init_lora(a, seed);
  const std::vector<float> r = randn(size_t(a.all().numel()), seed + 1, 0.2f);
  for (size_t i = 0; i < a.specs().size(); i++)
    if (a.specs()[i].is_b) {
      float* p = a.tensor(i).f32();
      for (int64_t j = 0; j < a.tensor(i).numel(); j++) p[j] = r[size_t(j)];
    }
}

struct LoraRun {
  double loss;
  std::vector<float> grads;
};

LoraRun run_lora(const LlamaConfig& c, const LoraConfig& lc, Plan p, Tok& tk, int64_t T, bool suffix = true) {
  p.lora = lc;
  Memory mem;
  Context ctx = cpu_context(mem);
  ParamSet w(c, mem, Tier::device, Tag::weights);
  init_params_random(w, c, 21);
  LoraSet a(c, lc, mem, Tier::device, Tag::weights), ga(c, lc, mem, Tier::device, Tag::grads);
  random_adapters(a, 4);
  AnyStep step(c, mem, 1, T, p);
  step.set_adapters(&a);
  step.set_label_suffix(suffix);
  LoraRun r;
  r.loss = step.run(w, Grads{nullptr, &ga}, tk.input(T), ctx);
  r.grads.assign(ga.all().f32(), ga.all().f32() + ga.all().numel());
  EXPECT_EQ(mem.tracker().tag(Tier::device, Tag::grads).peak, lora_param_bytes(c, lc))
      << "the frozen base must get no gradient memory";
  return r;
}

TEST(Lora, AdapterGradientsAreTheChainRuleThroughTheMergedWeights) {
  const LlamaConfig c = small();
  const LoraConfig lc = every_target();
  const int64_t T = 29;
  Tok tk = tokens(T, c.vocab_size);
  Plan plain;
  plain.recompute = Recompute::none;
  const LoraRun lr = run_lora(c, lc, plain, tk, T);

  // the merged model, trained fully: its loss and weight gradients G
  Memory mem;
  Context ctx = cpu_context(mem);
  ParamSet w(c, mem, Tier::host, Tag::weights), g(c, mem, Tier::host, Tag::grads);
  init_params_random(w, c, 21);
  LoraSet a(c, lc, mem, Tier::host, Tag::weights);
  random_adapters(a, 4);
  merge_lora(w, a, lc);
  GradStep step(c, mem, 1, T, plain);
  g.zero();
  const double loss = step.run(w, g, tk.input(T), ctx);
  EXPECT_NEAR(lr.loss, loss, 1e-5 * loss);

  const float s = lc.scale();
  double worst = 0, big = 0;
  size_t off = 0;
  for (size_t i = 0; i < a.specs().size(); i++) {
    const LoraSpec& sp = a.specs()[i];
    const LoraPair& pa = (sp.target == 0   ? a.layers[size_t(sp.layer)].q
                          : sp.target == 1 ? a.layers[size_t(sp.layer)].k
                          : sp.target == 2 ? a.layers[size_t(sp.layer)].v
                          : sp.target == 3 ? a.layers[size_t(sp.layer)].o
                          : sp.target == 4 ? a.layers[size_t(sp.layer)].gate
                          : sp.target == 5 ? a.layers[size_t(sp.layer)].up
                                           : a.layers[size_t(sp.layer)].down);
    const LayerParams& gl = g.layers[size_t(sp.layer)];
    const Tensor G = sp.target == 0   ? gl.wq
                     : sp.target == 1 ? gl.wk
                     : sp.target == 2 ? gl.wv
                     : sp.target == 3 ? gl.wo
                     : sp.target == 4 ? gl.wgate
                     : sp.target == 5 ? gl.wup
                                      : gl.wdown;
    const int64_t OC = G.dim(0), IC = G.dim(1), r = lc.rank;
    const float* got = lr.grads.data() + off;
    for (int64_t x = 0; x < sp.shape[0]; x++)
      for (int64_t y = 0; y < sp.shape[1]; y++) {
        double want = 0;
        if (sp.is_b)  // dB[o, k] = s sum_i G[o, i] A[k, i]
          for (int64_t i = 0; i < IC; i++) want += double(G.f32()[x * IC + i]) * pa.A.f32()[y * IC + i];
        else  // dA[k, i] = s sum_o B[o, k] G[o, i]
          for (int64_t o = 0; o < OC; o++) want += double(pa.B.f32()[o * r + x]) * G.f32()[o * IC + y];
        want *= s;
        worst = std::max(worst, std::fabs(got[x * sp.shape[1] + y] - want));
        big = std::max(big, std::fabs(want));
      }
    off += size_t((sp.shape.numel() + 15) / 16 * 16);
  }
  ASSERT_GT(big, 0);
  EXPECT_LT(worst / big, 2e-5) << "largest adapter gradient difference " << worst << " of " << big;
}

TEST(Lora, EveryPlanGivesThePlainStepsAdapterGradients) {
  const LlamaConfig c = small();
  LoraConfig lc = every_target();
  lc.targets = {"q_proj", "v_proj", "down_proj"};
  const int64_t T = 31;
  Tok tk = tokens(T, c.vocab_size);
  Plan plain;
  plain.recompute = Recompute::none;
  const LoraRun ref = run_lora(c, lc, plain, tk, T);
  std::vector<Plan> plans(5);
  plans[0].recompute = Recompute::full, plans[0].mlp_tiles = 3;
  plans[1].recompute = Recompute::selective, plans[1].offload = Offload::host;
  plans[2].offload = Offload::disk, plans[2].offload_dir = ::testing::TempDir();
  plans[3].chunk_mode = ChunkMode::seco, plans[3].chunk_size = 8;
  plans[4].chunk_mode = ChunkMode::seco, plans[4].chunk_size = 10, plans[4].offload = Offload::host,
  plans[4].recompute = Recompute::none;
  for (const Plan& p : plans) {
    SCOPED_TRACE(describe(p));
    const LoraRun r = run_lora(c, lc, p, tk, T);
    EXPECT_NEAR(r.loss, ref.loss, 1e-5 * ref.loss);
    double worst = 0, big = 0;
    for (size_t i = 0; i < r.grads.size(); i++)
      worst = std::max(worst, double(std::fabs(r.grads[i] - ref.grads[i]))),
      big = std::max(big, double(std::fabs(ref.grads[i])));
    EXPECT_LT(worst / big, 1e-5);
  }
}

// The prompt's labels ignored (answer-only loss): the last block on the
// labeled suffix gives the whole block's adapter gradients, every target.
TEST(Lora, TheLabeledSuffixGivesTheWholeBlocksAdapterGradients) {
  const LlamaConfig c = small();
  const LoraConfig lc = every_target();
  const int64_t T = 31;
  Tok tk = tokens(T, c.vocab_size);
  for (int64_t i = 0; i < 19; i++) tk.lab[size_t(i)] = -100;
  for (Recompute rc : {Recompute::none, Recompute::full}) {
    Plan p;
    p.recompute = rc;
    const LoraRun ref = run_lora(c, lc, p, tk, T, false), r = run_lora(c, lc, p, tk, T, true);
    EXPECT_NEAR(r.loss, ref.loss, 1e-5 * ref.loss);
    double worst = 0, big = 0;
    for (size_t i = 0; i < r.grads.size(); i++)
      worst = std::max(worst, double(std::fabs(r.grads[i] - ref.grads[i]))),
      big = std::max(big, double(std::fabs(ref.grads[i])));
    EXPECT_GT(big, 0);
    EXPECT_LT(worst / big, 1e-5);
  }
}

TEST(Lora, PeftFilesRoundTripAndMergeIsExactForAZeroB) {
  const LlamaConfig c = small();
  LoraConfig lc = every_target();
  Memory mem;
  LoraSet a(c, lc, mem, Tier::host, Tag::weights), b(c, lc, mem, Tier::host, Tag::weights);
  random_adapters(a, 9);
  const std::string dir = ::testing::TempDir() + "/peft";
  save_lora_peft(dir, a, lc, "base/model");
  const LoraConfig back = load_lora_config(dir);
  EXPECT_EQ(back.rank, lc.rank);
  EXPECT_EQ(back.alpha, lc.alpha);
  EXPECT_EQ(back.targets, lc.targets);
  load_lora_peft(dir, b);
  EXPECT_EQ(0, std::memcmp(a.all().ptr, b.all().ptr, a.all().bytes()));
  EXPECT_EQ(a.specs()[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(a.specs()[1].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  EXPECT_EQ(a.specs()[1].shape, Shape({c.q_dim(), lc.rank}));
  // PEFT's init (B = 0) leaves the merged model equal to the base
  init_lora(a, 1);
  ParamSet w(c, mem, Tier::host, Tag::weights), w2(c, mem, Tier::host, Tag::weights);
  init_params_random(w, c, 2);
  init_params_random(w2, c, 2);
  merge_lora(w2, a, lc);
  EXPECT_EQ(0, std::memcmp(w.all().ptr, w2.all().ptr, w.all().bytes()));
  expect_error(
      [&] {
        LoraConfig bad = lc;
        bad.targets = {"qproj"};
        validate_lora(bad);
      },
      {"qproj", "q_proj"});
}

TEST(Lora, MemoryPredictionCountsOnlyAdaptersAsTrained) {
  const LlamaConfig c = small();
  Plan p;
  p.lora = every_target();
  const MemoryPrediction m = predict_memory(c, p, 1, 64, Purpose::train);
  EXPECT_EQ(m.tag[0][size_t(Tag::grads)], lora_param_bytes(c, p.lora));
  EXPECT_EQ(m.tag[0][size_t(Tag::optim)], 2 * lora_param_bytes(c, p.lora));
  Memory mem;
  Context ctx = cpu_context(mem);
  ParamSet w(c, mem, Tier::device, Tag::weights);
  init_params_random(w, c, 1);
  LoraSet a(c, p.lora, mem, Tier::device, Tag::weights), ga(c, p.lora, mem, Tier::device, Tag::grads);
  Buffer in(mem, Tier::host, Tag::data, {1, 64}, DType::I32),
      lab(mem, Tier::host, Tag::data, {1, 64}, DType::I32);
  for (int i = 0; i < 64; i++) in.t().i32()[i] = i % 53, lab.t().i32()[i] = (i * 3) % 53;
  {
    AnyStep step(c, mem, 1, 64, p);
    step.set_adapters(&a);
    step.run(w, Grads{nullptr, &ga}, StepInput{in.t(), lab.t(), Tensor(), Tensor()}, ctx);
  }
  const MemoryPrediction g = predict_memory(c, p, 1, 64, Purpose::grad);
  for (int t = 0; t < kNumTags; t++)
    EXPECT_EQ(mem.tracker().tag(Tier::device, Tag(t)).peak, g.tag[0][size_t(t)]) << tag_name(Tag(t));
}

}  // namespace
}  // namespace longctx::test
