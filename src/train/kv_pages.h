// KvPages: the K/V cache of chunk-wise training (SeCO/SpaCO) as an
// AttentionRunner. Every block's K and V for the whole (padded) sequence, and
// their gradients, are stores on the plan's offload tier: device memory, host
// memory, or a DiskFile; pages of one chunk are brought to device staging
// slots as attention needs them (the copy thread fetches the next one while
// the current one computes), and the gradients that a chunk's queries send to
// earlier pages are added back into the stores, on the copy thread when off
// the device.
// Shared heads (chunks across more ranks than KV heads): the ranks of `share`
// hold the same KV heads, so each stores only its part of every page (part r
// of the flat page, as Comm's parts cut it); attention gathers a page's parts
// before it reads them, and the page's gradients from every rank's query
// heads are reduce-scattered, each rank keeping the sum of its part.
// bf16 K/V (the plan's kv_dtype): the K and V stores hold bf16 (half the
// bytes); a page is rounded when stored and widened to fp32 in a device slot
// before attention reads it. The gradient stores stay fp32 unless kv_grad_dtype
// is bf16: then each addition into a page is made in fp32 and rounded.
#pragma once
#include <memory>
#include <vector>

#include "comm/comm.h"
#include "core/copy_thread.h"
#include "core/disk_file.h"
#include "model/block.h"
#include "strategy/memory_model.h"

namespace longctx {

class KvPages : public AttentionRunner {
 public:
  // share: the ranks that hold the same KV heads (null or one rank: none).
  // token_slices (ring kinds): the ranks of `share` each run a slice of every chunk's tokens with all heads:
  // the blocks give this runner the rank's queries (Tc / P rows) and the whole chunk's K/V (gathered), and
  // part r of a page is rank r's slice of it.
  KvPages(const LlamaConfig& c, const StepLayout& s, int64_t k, Memory& mem, Comm* share = nullptr,
          bool token_slices = false);
  ~KvPages() override;
  // Per-step state: the whole sequence's document ids (padding its own), and those of its real tokens.
  void set_docs(std::vector<int32_t>& d, const std::vector<int32_t>& real, Context& ctx);
  void zero_grads();
  void set_chunk(int64_t j, float kv_scale) { j_ = j, kv_scale_ = kv_scale; }
  // Earlier pages that attention has read so far (forward and backward; pages wholly outside a block's
  // sliding window are skipped).
  int64_t pages_read() const { return pages_read_; }
  int64_t bytes_sent() const { return bytes_sent_; }  // to the other ranks of `share`, so far
  // Elements of a page each rank of a group of `ranks` stores (Comm's part of a flat page).
  static int64_t part_elems(int64_t page_elems, int ranks) { return (page_elems + ranks - 1) / ranks; }

  void forward(int64_t l, const BlockActs& a, Context& ctx) override;
  void store_kv(int64_t l, const BlockActs& a, Context& ctx) override;
  void backward(int64_t l, const BlockActs& a, const BlockGrads& g, Context& ctx) override;

 private:
  enum Store { kK, kV, kDK, kDV };  // K, V, and their gradients
  // This rank's part of page p of block l's store s, as a tensor (device and host tiers; not disk).
  Tensor page(Store s, int64_t l, int64_t p) const;
  // This rank's part of a whole page t (Tc, Ckv), flat; t itself without sharing.
  Tensor own(const Tensor& t) const { return t.view({page_elems_}).slice0(part_off_, part_len_); }
  int64_t disk_offset(Store s, int64_t l, int64_t p) const;  // bytes into kv_file_ / grad_file_
  DiskFile& file(Store s) const { return s == kK || s == kV ? *kv_file_ : *grad_file_; }
  // Main thread: page := src (a device tensor of one page); dst (device) := page.
  void put(Store s, int64_t l, int64_t p, const Tensor& src, Context& ctx);
  void get(Store s, int64_t l, int64_t p, const Tensor& dst, Context& ctx);
  // Copy thread: the same, with host staging of its own; page += sc * src (src on the device). Device
  // copies wait for the compute fence `f` marked when they were queued (Memory::fence).
  void put_async(Store s, int64_t l, int64_t p, const Tensor& dst, const std::shared_ptr<void>& f);
  void add_async(Store s, int64_t l, int64_t p, const Tensor& src, const Tensor& src_host, float sc,
                 const std::shared_ptr<void>& f);

  // Chunk j_'s queries against chunk p's keys (p <= j_).
  AttentionParams params(int64_t l, int64_t p) const;  // block l's queries of chunk j_ against page p
  // The first page that block l's sliding window lets chunk j_'s queries see (0 without a window).
  int64_t first_page(int64_t l) const;
  void prefetch(int64_t l, int64_t p);
  // page p >= lo; prefetches page p - 1 when that is still >= lo
  void fetch(int64_t l, int64_t p, int64_t lo, Tensor& K, Tensor& V, Context& ctx);
  void add_grad_page(Tensor g, Store s, int64_t l, int64_t p, Context& ctx);
  void send_grad_page(int64_t l, int64_t p, int s, Context& ctx);

  LlamaConfig c_;
  Memory& mem_;
  int64_t Tc_, k_, page_elems_;
  int64_t Tq_ = 0, q_off_ = 0;  // query rows of a chunk this rank runs, and where they start in the chunk
  Comm* share_ = nullptr;       // ranks of the same KV heads (null: none)
  int64_t part_ = 0, part_off_ = 0, part_len_ = 0;  // a stored page's elements; this rank's part of a page
  bool bf16_ = false, gbf16_ = false;               // K and V stores in bf16; their gradient stores in bf16
  int64_t elem_bytes(Store s) const { return (s == kK || s == kV ? bf16_ : gbf16_) ? 2 : 4; }
  // t (part_len_, F32) += a page of gradient store s (bf16 or fp32)
  void add_from_store(const Tensor& t, Store s, int64_t l, int64_t p, Context& ctx);
  Tier tier_;
  bool gpu_;  // the device tier is GPU memory: host code stages through pinned copies
  std::vector<Buffer> kc_, vc_, kg_, vg_;          // L x (k, part) on the device or host tier
  std::unique_ptr<DiskFile> kv_file_, grad_file_;  // disk: L x (K, V) and L x (dK, dV) of (k, part)
  Buffer io_main_, io_copy_;                       // (Tc, Ckv) host pages: disk I/O of the main / copy thread
  Buffer kpage_[2], vpage_[2], dkpage_;            // (Tc, Ckv) device staging
  Buffer kraw_[2], vraw_[2], praw_;  // bf16: (Tc * Ckv) slots the copy thread fills; (part) a page to store
  Buffer graw_, gwide_;              // bf16 gradients: (part) a page as stored, and widened
  Buffer out_p_, lse_p_, dq_p_, docs_;  // device scratch
  Buffer dk_p_[2], dv_p_[2];            // (Tc, Ckv) gradients of one earlier page, two slots
  Buffer dk_h_[2], dv_h_[2];            // (Tc, Ckv) their host copies (GPU memory, off-device stores)
  std::unique_ptr<CopyThread> copier_;  // off-device tiers: page traffic overlaps with compute
  uint64_t fetched_[2] = {0, 0}, sent_[2] = {0, 0};
  int64_t j_ = 0;
  int64_t pages_read_ = 0, bytes_sent_ = 0;
  float kv_scale_ = 1.f;
  bool masked_ = true;  // several documents: attention takes the document ids
};

}  // namespace longctx
