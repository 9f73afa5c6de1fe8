// KvPages: the K/V cache of chunk-wise training (SeCO/SpaCO) as an
// AttentionRunner. Every block's K and V for the whole (padded) sequence, and
// their gradients, are stores on the plan's offload tier: device memory, host
// memory, or a DiskFile; pages of one chunk are brought to device staging
// slots as attention needs them (the copy thread fetches the next one while
// the current one computes), and the gradients that a chunk's queries send to
// earlier pages are added back into the stores, on the copy thread when off
// the device.
#pragma once
#include <memory>
#include <vector>

#include "core/copy_thread.h"
#include "core/disk_file.h"
#include "model/block.h"
#include "strategy/memory_model.h"

namespace longctx {

class KvPages : public AttentionRunner {
 public:
  KvPages(const LlamaConfig& c, const StepLayout& s, int64_t k, Memory& mem);
  ~KvPages() override;
  // Per-step state: the whole sequence's document ids (padding its own), and those of its real tokens.
  void set_docs(std::vector<int32_t>& d, const std::vector<int32_t>& real, Context& ctx);
  void zero_grads();
  void set_chunk(int64_t j, float kv_scale) { j_ = j, kv_scale_ = kv_scale; }
  // Earlier pages that attention has read so far (forward and backward; pages wholly outside a block's
  // sliding window are skipped).
  int64_t pages_read() const { return pages_read_; }

  void forward(int64_t l, const BlockActs& a, Context& ctx) override;
  void store_kv(int64_t l, const BlockActs& a, Context& ctx) override;
  void backward(int64_t l, const BlockActs& a, const BlockGrads& g, Context& ctx) override;

 private:
  enum Store { kK, kV, kDK, kDV };  // K, V, and their gradients
  // Page p of block l's store s, as a tensor (device and host tiers; not disk).
  Tensor page(Store s, int64_t l, int64_t p) const;
  int64_t disk_offset(Store s, int64_t l, int64_t p) const;  // bytes into kv_file_ / grad_file_
  DiskFile& file(Store s) const { return s == kK || s == kV ? *kv_file_ : *grad_file_; }
  // Main thread: page := src (a device tensor of one page); dst (device) := page.
  void put(Store s, int64_t l, int64_t p, const Tensor& src, Context& ctx);
  void get(Store s, int64_t l, int64_t p, const Tensor& dst, Context& ctx);
  // Copy thread: the same, with host staging of its own; page += sc * src (src on the device).
  void put_async(Store s, int64_t l, int64_t p, const Tensor& dst);
  void add_async(Store s, int64_t l, int64_t p, const Tensor& src, const Tensor& src_host, float sc);

  // Chunk j_'s queries against chunk p's keys (p <= j_).
  AttentionParams params(int64_t l, int64_t p) const;  // block l's queries of chunk j_ against page p
  // The first page that block l's sliding window lets chunk j_'s queries see (0 without a window).
  int64_t first_page(int64_t l) const;
  void prefetch(int64_t l, int64_t p);
  // page p >= lo; prefetches page p - 1 when that is still >= lo
  void fetch(int64_t l, int64_t p, int64_t lo, Tensor& K, Tensor& V);
  void add_grad_page(Tensor g, Store s, int64_t l, int64_t p, Context& ctx);
  void send_grad_page(int64_t l, int64_t p, int s, Context& ctx);

  LlamaConfig c_;
  Memory& mem_;
  int64_t Tc_, k_, page_elems_;
  Tier tier_;
  bool gpu_;  // the device tier is GPU memory: host code stages through pinned copies
  std::vector<Buffer> kc_, vc_, kg_, vg_;          // L x (k*Tc, Ckv) on the device or host tier
  std::unique_ptr<DiskFile> kv_file_, grad_file_;  // disk: L x (K, V) and L x (dK, dV) of (k*Tc, Ckv)
  Buffer io_main_, io_copy_;                       // (Tc, Ckv) host pages: disk I/O of the main / copy thread
  Buffer kpage_[2], vpage_[2], dkpage_;            // (Tc, Ckv) device staging
  Buffer out_p_, lse_p_, dq_p_, docs_;             // device scratch
  Buffer dk_p_[2], dv_p_[2];                       // (Tc, Ckv) gradients of one earlier page, two slots
  Buffer dk_h_[2], dv_h_[2];            // (Tc, Ckv) their host copies (GPU memory, off-device stores)
  std::unique_ptr<CopyThread> copier_;  // off-device tiers: page traffic overlaps with compute
  uint64_t fetched_[2] = {0, 0}, sent_[2] = {0, 0};
  int64_t j_ = 0;
  int64_t pages_read_ = 0;
  float kv_scale_ = 1.f;
  bool masked_ = true;  // several documents: attention takes the document ids
};

}  // namespace longctx
