// The whole step: deterministic, equal to finite differences of its own loss,
// and refusing to run past the device budget.
#include "harness.h"
#include "model/decode.h"
#include "model/flops.h"
#include "model/params.h"
#include "ops/matmul.h"
#include "train/grad_step.h"

namespace longctx::test {
namespace {

LlamaConfig tiny(bool tied, int64_t nkv) {
  LlamaConfig c;
  c.vocab_size = 37, c.hidden_size = 24, c.intermediate_size = 40, c.num_hidden_layers = 2;
  c.num_attention_heads = 4, c.num_key_value_heads = nkv, c.head_dim = 6, c.tie_word_embeddings = tied;
  c.initializer_range = 0.3;
  c.rope_scaling.type = "llama3", c.rope_scaling.factor = 4,
  c.rope_scaling.original_max_position_embeddings = 8;
  c.validate();
  return c;
}

// The other families on the same tiny sizes: every bias, q/k norms with head_dim != C / NH, sliding windows
// shorter than the batch's rows, yarn.
LlamaConfig family(const std::string& type) {
  LlamaConfig c = tiny(false, 2);
  c.model_type = type;
  c.rope_scaling = RopeScaling{};
  if (type == "qwen2") {  // q/k/v biases; a window on block 1 only
    c.use_sliding_window = true, c.sliding_window = 4, c.max_window_layers = 1;
    c.rope_scaling.type = "yarn", c.rope_scaling.factor = 4,
    c.rope_scaling.original_max_position_embeddings = 8;
  } else if (type == "qwen3") {  // q/k norms, all four attention biases, head_dim 8 != 24 / 4
    c.head_dim = 8, c.attention_bias = true;
    c.use_sliding_window = true, c.sliding_window = 5,
    c.layer_types = {"sliding_attention", "full_attention"};
  } else if (type == "mistral") {  // every block windowed
    c.sliding_window = 3;
  } else {  // llama with every bias
    c.attention_bias = true, c.mlp_bias = true;
  }
  c.validate();
  return c;
}

// Biases and norm weights away from their init so that their gradients matter.
void perturb_vectors(ParamSet& w) {
  for (size_t i = 0; i < w.specs().size(); i++) {
    const ParamSpec& s = w.specs()[i];
    if (s.shape.n != 1) continue;
    float* p = w.tensor(i).f32();
    for (int64_t j = 0; j < s.shape.numel(); j++) p[j] += 0.3f * std::sin(float(7 * j + 3 * i));
  }
}

struct Batch {
  int64_t B, T;
  std::vector<int32_t> in, lab;
};
Batch make_batch(int64_t B, int64_t T, int64_t V) {
  Batch b{B, T, {}, {}};
  for (int64_t i = 0; i < B * T; i++) {
    b.in.push_back(int32_t((i * 7 + 3) % V));
    b.lab.push_back(i % 9 == 4 ? -100 : int32_t((i * 5 + 1) % V));
  }
  return b;
}

double run(GradStep& s, const ParamSet& w, ParamSet& g, Batch& b, Context& ctx) {
  g.zero();
  return s.run(w, g, Tensor(b.in.data(), {b.B, b.T}, DType::I32),
               Tensor(b.lab.data(), {b.B, b.T}, DType::I32), ctx);
}

TEST(Model, StepIsDeterministicAndMatchesFiniteDifferences) {
  for (auto [tied, nkv] : {std::pair{true, int64_t(4)}, {false, int64_t(2)}, {false, int64_t(1)}}) {
    const LlamaConfig c = tiny(tied, nkv);
    Memory mem;
    Context ctx = cpu_context(mem);
    ParamSet w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
    ParamSet g2(c, mem, Tier::device, Tag::grads);
    init_params_random(w, c, 5);
    for (const auto& l : w.layers)  // norms away from 1 so their gradients matter
      for (int64_t i = 0; i < l.ln1.numel(); i++)
        l.ln1.f32()[i] += 0.1f * float(i % 5), l.ln2.f32()[i] -= 0.05f * float(i % 3);
    Batch b = make_batch(2, 11, c.vocab_size);
    GradStep step(c, mem, b.B, b.T);
    const double loss = run(step, w, g, b, ctx);
    g2.zero();
    const double loss2 = step.run(w, g2, Tensor(b.in.data(), {2, 11}, DType::I32),
                                  Tensor(b.lab.data(), {2, 11}, DType::I32), ctx);
    EXPECT_EQ(loss, loss2);
    EXPECT_EQ(0, std::memcmp(g.all().ptr, g2.all().ptr, g.all().bytes())) << "gradients differ run to run";
    std::vector<float> grad(g.all().f32(), g.all().f32() + g.all().numel());
    auto f = [&] { return run(step, w, g2, b, ctx); };
    expect_fd_grad(w.all().f32(), size_t(w.all().numel()), grad.data(), f, "model", 40, 1e-2f, 5e-2, 2e-4);
  }
}

// Every parameter of the other families by finite differences, the biases and q/k norms each in full.
TEST(Model, FamiliesMatchFiniteDifferencesInEveryNewParameter) {
  for (const char* type : {"qwen2", "qwen3", "mistral", "llama"}) {
    SCOPED_TRACE(type);
    const LlamaConfig c = family(type);
    Memory mem;
    Context ctx = cpu_context(mem);
    ParamSet w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
    init_params_random(w, c, 5);
    perturb_vectors(w);
    Batch b = make_batch(2, 11, c.vocab_size);
    GradStep step(c, mem, b.B, b.T);
    run(step, w, g, b, ctx);
    const std::vector<float> grad(g.all().f32(), g.all().f32() + g.all().numel());
    auto f = [&] {
      ParamSet g2(c, mem, Tier::device, Tag::grads);
      return run(step, w, g2, b, ctx);
    };
    int vectors = 0;
    for (size_t i = 0; i < w.specs().size(); i++) {
      const ParamSpec& s = w.specs()[i];
      const bool fresh =
          s.name.find(".bias") != std::string::npos || s.name.find("_norm.") != std::string::npos;
      if (!fresh) continue;
      vectors++;
      const float* an = grad.data() + w.offset(i);
      expect_fd_grad(w.tensor(i).f32(), size_t(s.shape.numel()), an, f, s.name.c_str(), 12, 1e-2f, 5e-2,
                     2e-4);
    }
    const int want = std::string(type) == "qwen2"     ? 2 * 3
                     : std::string(type) == "qwen3"   ? 2 * 6
                     : std::string(type) == "mistral" ? 0
                                                      : 2 * 7;
    EXPECT_EQ(vectors, want);
    expect_fd_grad(w.all().f32(), size_t(w.all().numel()), grad.data(), f, "model", 30, 1e-2f, 5e-2, 2e-4);
  }
}

// The KV-cache decoder with every family feature (windows shorter than the prompt, biases, q/k norms).
TEST(Model, KvCacheDecodingOfTheFamiliesMatchesFullForward) {
  for (const char* type : {"qwen2", "qwen3", "mistral"}) {
    SCOPED_TRACE(type);
    const LlamaConfig c = family(type);
    Memory mem;
    Context ctx = cpu_context(mem);
    ParamSet w(c, mem, Tier::device, Tag::weights);
    init_params_random(w, c, 9);
    perturb_vectors(w);
    const int64_t T = 13, V = c.vocab_size;
    Batch b = make_batch(1, T, V);
    GradStep step(c, mem, 1, T);
    Tensor h = step.forward_hidden(w,
                                   StepInput{Tensor(b.in.data(), {1, T}, DType::I32),
                                             Tensor(b.lab.data(), {1, T}, DType::I32), Tensor(), Tensor()},
                                   ctx);
    std::vector<float> full(size_t(T * V));
    matmul_forward(Tensor(full.data(), {T, V}), h, w.lm_head, ctx);
    Decoder d(c, mem, 32);
    std::vector<float> got = d.feed(w, std::vector<int32_t>(b.in.begin(), b.in.begin() + 6), ctx);
    for (int64_t t = 5; t < T; t++) {
      if (t >= 6) got = d.feed(w, {b.in[size_t(t)]}, ctx);
      for (int64_t v = 0; v < V; v++)
        ASSERT_NEAR(got[size_t(v)], full[size_t(t * V + v)], 1e-4) << "position " << t << " logit " << v;
    }
  }
}

// FLOPs of a step, counted naively: every projection per row, and per head
// every visible (query, key) pair; the labeled suffix drops the last block's
// rows before it, except their keys and values.
TEST(Model, StepFlopsCountWhatTheLossNeeds) {
  const LlamaConfig c = tiny(false, 2);
  const int64_t B = 3, T = 17, C = c.hidden_size, F = c.intermediate_size, Cq = c.q_dim(), Ckv = c.kv_dim();
  const int64_t L = c.num_hidden_layers, NH = c.num_attention_heads, HS = c.head_dim, V = c.vocab_size;
  for (int64_t S : {T, int64_t(5), int64_t(1)}) {
    double fwd = 0;
    for (int64_t l = 0; l < L; l++)
      for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
          const bool all = l + 1 < L || t >= T - S;  // this row's output is needed
          fwd += 2.0 * 2 * C * Ckv;                  // k, v
          if (!all) continue;
          fwd += 2.0 * (C * Cq + Cq * C + 3 * C * F);  // q, o, gate, up, down
          for (int64_t j = 0; j <= t; j++) fwd += 4.0 * NH * HS;
        }
    fwd += 2.0 * B * S * C * V;
    const StepFlops f = step_flops(c, B, T, true, S == T ? 0 : S);
    EXPECT_NEAR(f.model, 3 * fwd, 1e-9 * fwd) << "suffix " << S;
    EXPECT_GT(f.executed, f.model);
  }
}

// With sliding windows a query sees at most `window` keys; mistral windows every block, qwen2 here only
// block 1 (the last), qwen3 only block 0.
TEST(Model, StepFlopsCountOnlyTheKeysInTheWindow) {
  for (const char* type : {"mistral", "qwen2", "qwen3"}) {
    const LlamaConfig c = family(type);
    const int64_t B = 2, T = 17, C = c.hidden_size, F = c.intermediate_size, Cq = c.q_dim(), Ckv = c.kv_dim();
    const int64_t L = c.num_hidden_layers, NH = c.num_attention_heads, HS = c.head_dim, V = c.vocab_size;
    for (int64_t S : {T, int64_t(6)}) {
      double fwd = 0;
      for (int64_t l = 0; l < L; l++)
        for (int64_t b = 0; b < B; b++)
          for (int64_t t = 0; t < T; t++) {
            fwd += 2.0 * 2 * C * Ckv;
            if (l + 1 == L && t < T - S) continue;
            fwd += 2.0 * (C * Cq + Cq * C + 3 * C * F);
            for (int64_t j = 0; j <= t; j++)
              if (c.window(l) == 0 || j > t - c.window(l)) fwd += 4.0 * NH * HS;
          }
      fwd += 2.0 * B * S * C * V;
      EXPECT_NEAR(step_flops(c, B, T, false, S == T ? 0 : S).model, 3 * fwd, 1e-9 * fwd) << type << " " << S;
    }
  }
  EXPECT_EQ(attention_pairs(0, 10, 0), 55);
  EXPECT_EQ(attention_pairs(0, 10, 3), 1 + 2 + 3 * 8);
  EXPECT_EQ(attention_pairs(5, 5, 3), 15);
  EXPECT_EQ(attention_pairs(5, 5, 100), 6 + 7 + 8 + 9 + 10);
}

TEST(Model, DeviceBudgetIsEnforcedBeforeTheStepRuns) {
  const LlamaConfig c = tiny(true, 2);
  Memory mem;
  mem.tracker().set_budget(Tier::device, 64 << 10);
  ParamSet w(c, mem, Tier::device, Tag::weights);
  try {
    GradStep step(c, mem, 1, 4096);
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of device memory"), std::string::npos) << e.what();
  }
}

// Logits of the KV-cache decoder (prefill, then one token at a time) equal
// those of the full forward pass at every position.
TEST(Model, KvCacheDecodingMatchesFullForward) {
  const LlamaConfig c = tiny(false, 2);
  Memory mem;
  Context ctx = cpu_context(mem);
  ParamSet w(c, mem, Tier::device, Tag::weights);
  init_params_random(w, c, 9);
  const int64_t T = 13, V = c.vocab_size;
  Batch b = make_batch(1, T, V);
  GradStep step(c, mem, 1, T);
  Tensor h = step.forward_hidden(w,
                                 StepInput{Tensor(b.in.data(), {1, T}, DType::I32),
                                           Tensor(b.lab.data(), {1, T}, DType::I32), Tensor(), Tensor()},
                                 ctx);
  std::vector<float> full(size_t(T * V));
  matmul_forward(Tensor(full.data(), {T, V}), h, w.lm_head, ctx);
  Decoder d(c, mem, 32);
  const int64_t prefill = 5;
  std::vector<float> got = d.feed(w, std::vector<int32_t>(b.in.begin(), b.in.begin() + prefill), ctx);
  for (int64_t t = prefill - 1; t < T; t++) {
    if (t >= prefill) got = d.feed(w, {b.in[size_t(t)]}, ctx);
    for (int64_t v = 0; v < V; v++)
      ASSERT_NEAR(got[size_t(v)], full[size_t(t * V + v)], 1e-4) << "position " << t << " logit " << v;
  }
  EXPECT_EQ(d.length(), T);
  EXPECT_THROW(d.feed(w, std::vector<int32_t>(40, 1), ctx), Error);
}

}  // namespace
}  // namespace longctx::test
