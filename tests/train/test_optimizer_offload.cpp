// The AdamW moments in host memory, streamed through the device in slices during the update
// (ZeroOptimizer's moments_on_host): the same weights and moments as the update on the device, bit for bit,
// for slices that cut the trained vector's pieces anywhere; the moments' bytes on the host tier and only
// two slices of them on the device; in the GPU's memory layout (an opaque device tier) too.
#include "harness.h"
#include "model/params.h"
#include "parallel/zero.h"
#include "train/checkpoint.h"

namespace longctx::test {
namespace {

LlamaConfig small() {
  LlamaConfig c;
  c.vocab_size = 61, c.hidden_size = 24, c.intermediate_size = 40, c.num_hidden_layers = 2;
  c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 6;
  c.validate();
  return c;
}

struct Outcome {
  std::vector<float> w, m, v;
  int64_t host_optim = 0, device_optim = 0, disk_optim = 0;
};

// Three AdamW steps on fixed gradients, the moments on the device or streamed from the host.
Outcome three_steps(const LlamaConfig& c, MomentsAt at, int64_t slice, bool opaque) {
  Memory mem;
  if (opaque) mem.set_allocator(Tier::device, make_opaque_host_allocator());
  Context ctx = cpu_context(mem);
  ParamSet w(c, mem, Tier::device, Tag::weights), g(c, mem, Tier::device, Tag::grads);
  {
    std::vector<float> wi = randn(size_t(w.all().numel()), 5, 0.1f);
    mem.copy(Tier::device, w.all().ptr, Tier::host, wi.data(), wi.size() * 4);
  }
  std::unique_ptr<Comm> one = make_local_comm();
  ZeroShards sh(w.all(), g.all(), named_tensors(w), 0, *one, mem);
  ZeroOptimizer opt(sh, mem, at, slice);
  for (int s = 1; s <= 3; s++) {
    std::vector<float> gi = randn(size_t(g.all().numel()), 10 + uint64_t(s), 0.05f);
    mem.copy(Tier::device, g.all().ptr, Tier::host, gi.data(), gi.size() * 4);
    AdamWParams p;
    p.lr = 1e-2f, p.step = s;
    opt.step(p, 0.1f, ctx);
  }
  Outcome r;
  r.w.resize(size_t(w.all().numel()));
  mem.copy(Tier::host, r.w.data(), Tier::device, w.all().ptr, r.w.size() * 4);
  std::vector<NamedTensor> m, v;
  opt.gather_state(m, v, ctx);
  for (size_t i = 0; i < m.size(); i++) {
    r.m.insert(r.m.end(), m[i].t.f32(), m[i].t.f32() + m[i].t.numel());
    r.v.insert(r.v.end(), v[i].t.f32(), v[i].t.f32() + v[i].t.numel());
  }
  r.host_optim = mem.tracker().tag(Tier::host, Tag::optim).current;
  r.device_optim = mem.tracker().tag(Tier::device, Tag::optim).current;
  r.disk_optim = mem.tracker().tag(Tier::disk, Tag::optim).current;
  return r;
}

TEST(OptimizerOffload, StreamedMomentsGiveTheDeviceUpdateBitForBit) {
  const LlamaConfig c = small();
  const int64_t n = ParamSet(c).flat_size();
  for (bool opaque : {false, true}) {
    const Outcome ref = three_steps(c, MomentsAt::shards, 0, opaque);
    EXPECT_EQ(ref.device_optim, 2 * n * 4);
    for (int64_t slice : {int64_t(1), int64_t(97), int64_t(1000), n, 10 * n}) {
      SCOPED_TRACE("slice " + std::to_string(slice) + (opaque ? " (GPU memory layout)" : ""));
      const Outcome r = three_steps(c, MomentsAt::host, slice, opaque);
      EXPECT_EQ(r.w, ref.w);
      EXPECT_EQ(r.m, ref.m);
      EXPECT_EQ(r.v, ref.v);
      EXPECT_GE(r.host_optim, 2 * n * 4);  // the moments (and, where the device is opaque, gather scratch)
      EXPECT_EQ(r.device_optim, 2 * std::min(slice, n) * 4) << "two slices on the device, not the moments";
    }
  }
}

// The moments in a file (offload_optimizer disk), streamed through host slices and the device's: the same
// update bit for bit, and read back for checkpoints from the file's mapping (gather_state), not copied.
TEST(OptimizerOffload, MomentsOnTheDiskGiveTheDeviceUpdateBitForBit) {
  const LlamaConfig c = small();
  const int64_t n = ParamSet(c).flat_size();
  for (bool opaque : {false, true}) {
    const Outcome ref = three_steps(c, MomentsAt::shards, 0, opaque);
    for (int64_t slice : {int64_t(1), int64_t(97), n, 10 * n})
      for (MomentsAt at : {MomentsAt::disk, MomentsAt::split}) {  // (split: m in host memory, v on the disk)
        const bool split = at == MomentsAt::split;
        SCOPED_TRACE("slice " + std::to_string(slice) + (opaque ? " (GPU memory layout)" : "") +
                     (split ? " split" : ""));
        const Outcome r = three_steps(c, at, slice, opaque);
        EXPECT_EQ(r.w, ref.w);
        EXPECT_EQ(r.m, ref.m);
        EXPECT_EQ(r.v, ref.v);
        EXPECT_EQ(r.disk_optim, (split ? 1 : 2) * n * 4);
        EXPECT_EQ(r.host_optim, (split ? n * 4 + std::min(slice, n) * 4 : 2 * std::min(slice, n) * 4))
            << "host slices (split: and m), and no copy for gather_state";
        EXPECT_EQ(r.device_optim, 2 * std::min(slice, n) * 4);
      }
  }
}

}  // namespace
}  // namespace longctx::test
