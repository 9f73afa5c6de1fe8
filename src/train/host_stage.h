// Host copies of model state that may live in GPU memory, for the host code
// that reads files into it, initialises it or writes it out (weights,
// adapters, optimizer moments, checkpoints). On the CPU backend every view is
// the tensor itself and nothing is copied.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/context.h"
#include "io/safetensors.h"
#include "model/lora.h"
#include "model/params.h"

namespace longctx {

class HostStage {
 public:
  explicit HostStage(Context& ctx) : ctx_(ctx) {}
  // A tensor host code may touch: t itself, or a host copy (filled from t when `fill`).
  Tensor view(const Tensor& t, bool fill = true);
  std::vector<NamedTensor> views(const std::vector<NamedTensor>& ts, bool fill = true);
  void flush();  // every staged copy back into its tensor (after host code wrote them)

 private:
  Context& ctx_;
  std::vector<std::pair<Tensor, Buffer>> staged_;
};

// fn(host set) on a host copy of `p` when it lives in GPU memory (copied in first when `fill`, back after
// when `write_back`), else on `p` itself.
void on_host(ParamSet& p, const LlamaConfig& c, Context& ctx, bool fill, bool write_back,
             const std::function<void(ParamSet&)>& fn);
void on_host(LoraSet& a, const LlamaConfig& c, const LoraConfig& lc, Context& ctx, bool fill, bool write_back,
             const std::function<void(LoraSet&)>& fn);

}  // namespace longctx
