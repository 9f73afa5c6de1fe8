#include "train/host_stage.h"

namespace longctx {

Tensor HostStage::view(const Tensor& t, bool fill) {
  if (!t.defined() || ctx_.mem->host_accessible(t.tier)) return t;
  Buffer b(*ctx_.mem, Tier::host, Tag::data, t.shape, t.dtype);
  if (fill) copy_tensor(b.t(), t, ctx_);
  const Tensor h = b.t();
  staged_.emplace_back(t, std::move(b));
  return h;
}

std::vector<NamedTensor> HostStage::views(const std::vector<NamedTensor>& ts, bool fill) {
  std::vector<NamedTensor> out;
  for (const NamedTensor& n : ts) out.push_back({n.name, view(n.t, fill)});
  return out;
}

void HostStage::flush() {
  for (auto& [t, b] : staged_) copy_tensor(t, b.t(), ctx_);
}

void on_host(ParamSet& p, const LlamaConfig& c, Context& ctx, bool fill, bool write_back,
             const std::function<void(ParamSet&)>& fn) {
  if (ctx.mem->host_accessible(p.all().tier)) return fn(p);
  ParamSet h(c, *ctx.mem, Tier::host, Tag::data);
  if (fill) copy_tensor(h.all(), p.all(), ctx);
  fn(h);
  if (write_back) copy_tensor(p.all(), h.all(), ctx);
}

void on_host(LoraSet& a, const LlamaConfig& c, const LoraConfig& lc, Context& ctx, bool fill, bool write_back,
             const std::function<void(LoraSet&)>& fn) {
  if (ctx.mem->host_accessible(a.all().tier)) return fn(a);
  LoraSet h(c, lc, *ctx.mem, Tier::host, Tag::data);
  if (fill) copy_tensor(h.all(), a.all(), ctx);
  fn(h);
  if (write_back) copy_tensor(a.all(), h.all(), ctx);
}

}  // namespace longctx
