// Tiered memory with byte accounting. Every allocation names a tier and a
// tag; the tracker keeps current and peak bytes per (tier, tag) and per tier,
// so `grad` can report them and `plan` can be held against them.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/tensor.h"

namespace longctx {

enum class Tag : uint8_t {
  weights,
  grads,
  optim,
  checkpoint,
  activations,
  kv_cache,
  kv_grad,
  workspace,
  comm,
  data,
  count
};
constexpr int kNumTags = int(Tag::count);
const char* tag_name(Tag t);

// "2GiB", "512MiB", "1.5GB", "4096" -> bytes. Throws on anything else.
int64_t parse_bytes(const std::string& s);
std::string format_bytes(int64_t b);  // "1.50 GiB"

class MemoryTracker {
 public:
  struct Counter {
    int64_t current = 0, peak = 0;
  };
  void set_budget(Tier t, int64_t bytes) { budget_[size_t(t)] = bytes; }  // 0: unlimited
  int64_t budget(Tier t) const { return budget_[size_t(t)]; }
  // Throws if the tier's budget would be exceeded, naming tag, bytes and budget.
  void on_alloc(Tier t, Tag g, int64_t bytes);
  void on_free(Tier t, Tag g, int64_t bytes);
  Counter tier(Tier t) const;
  Counter tag(Tier t, Tag g) const;
  void reset_peaks();  // peaks := current

 private:
  mutable std::mutex mu_;
  std::array<int64_t, kNumTiers> budget_{};
  std::array<Counter, kNumTiers> tiers_{};
  std::array<std::array<Counter, kNumTags>, kNumTiers> tags_{};
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* p, size_t bytes) = 0;
  // Sets `bytes` at p to zero (GPU memory: on the device, in stream order).
  virtual void zero(void* p, size_t bytes);
  // Whether host code may read and write these bytes (false for GPU memory).
  virtual bool host_accessible() const { return true; }
  // Copies n bytes between this allocator's memory and any other (either side may be this one's);
  // returns when they are there.
  virtual void copy(void* dst, const void* src, size_t n);
  // GPU memory: a mark of the compute enqueued so far (an event on the compute stream) that copies queued
  // for another thread wait for; null elsewhere (host code is synchronous). release_fence frees it.
  virtual void* fence() { return nullptr; }
  virtual void release_fence(void* f) { (void)f; }
  // copy() on the calling thread's own stream, after `fence` (GPU memory: a copy thread's copies then
  // overlap with the compute instead of queueing behind it); returns when the bytes are there.
  virtual void copy_after(void* dst, const void* src, size_t n, void* fence) {
    (void)fence;
    copy(dst, src, n);
  }
};

std::unique_ptr<Allocator> make_host_allocator();  // 64-byte aligned
// Host memory that host code must treat as GPU memory (host_accessible() is false): the CPU backend's
// way to run every staging path of the GPU backend (--device cpu-staged, for tests).
std::unique_ptr<Allocator> make_opaque_host_allocator();

// The memory of one process: an allocator and a tracker per tier.
class Memory {
 public:
  Memory();
  ~Memory();
  MemoryTracker& tracker() { return tracker_; }
  const MemoryTracker& tracker() const { return tracker_; }
  void set_allocator(Tier t, std::unique_ptr<Allocator> a);
  void* alloc(Tier t, Tag g, size_t bytes);
  void free(Tier t, Tag g, void* p, size_t bytes);
  void zero(Tier t, void* p, size_t bytes);
  bool host_accessible(Tier t) const { return alloc_[size_t(t)]->host_accessible(); }
  // n bytes from tier `from` to tier `to`, by the allocator that is not plain host memory (if any)
  void copy(Tier to, void* dst, Tier from, const void* src, size_t n);
  // For copies a copy thread makes: fence() marks the compute enqueued so far (GPU memory; null elsewhere),
  // copy_after() copies on the calling thread's stream once that compute is done. Take the fence on the
  // thread that enqueued the compute, when queueing the copy; it is freed with its last holder.
  std::shared_ptr<void> fence();
  void copy_after(Tier to, void* dst, Tier from, const void* src, size_t n, const std::shared_ptr<void>& f);

 private:
  MemoryTracker tracker_;
  std::array<std::unique_ptr<Allocator>, kNumTiers> alloc_;
};

// Owning buffer: a tensor plus where it came from. Movable, not copyable.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Memory& mem, Tier tier, Tag tag, Shape shape, DType dtype = DType::F32);
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void reset();
  void zero();
  const Tensor& t() const { return t_; }
  float* f32() const { return t_.f32(); }
  Tag tag() const { return tag_; }

 private:
  Memory* mem_ = nullptr;
  Tag tag_ = Tag::workspace;
  size_t bytes_ = 0;
  Tensor t_;
};

}  // namespace longctx
