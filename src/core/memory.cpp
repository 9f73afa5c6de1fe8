#include "core/memory.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace longctx {

const char* tag_name(Tag t) {
  static const char* names[] = {"weights",  "grads",   "optim",     "checkpoint", "activations",
                                "kv_cache", "kv_grad", "workspace", "comm",       "data"};
  return int(t) < kNumTags ? names[int(t)] : "?";
}

int64_t parse_bytes(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit((unsigned char)s[i]) || s[i] == '.')) i++;
  CHECK(i > 0, "cannot read a byte size from '", s, "' (use e.g. 2GiB, 512MiB, 1000000)");
  double v = std::strtod(s.substr(0, i).c_str(), nullptr);
  std::string unit = s.substr(i);
  double mul = 0;
  const char* units[] = {"", "B", "K", "KB", "KiB", "M", "MB", "MiB", "G", "GB", "GiB", "T", "TB", "TiB"};
  const double muls[] = {1,
                         1,
                         1024,
                         1e3,
                         1024,
                         1048576,
                         1e6,
                         1048576,
                         1073741824.0,
                         1e9,
                         1073741824.0,
                         1099511627776.0,
                         1e12,
                         1099511627776.0};
  for (size_t k = 0; k < sizeof(muls) / sizeof(muls[0]); k++)
    if (unit == units[k]) mul = muls[k];
  CHECK(mul > 0, "unknown unit '", unit, "' in byte size '", s, "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB)");
  return int64_t(std::llround(v * mul));
}

std::string format_bytes(int64_t b) {
  char buf[64];
  const double x = double(b);
  if (x >= 1073741824.0)
    std::snprintf(buf, sizeof buf, "%.2f GiB", x / 1073741824.0);
  else if (x >= 1048576.0)
    std::snprintf(buf, sizeof buf, "%.2f MiB", x / 1048576.0);
  else if (x >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.2f KiB", x / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%lld B", (long long)b);
  return buf;
}

void MemoryTracker::on_alloc(Tier t, Tag g, int64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& tc = tiers_[size_t(t)];
  const int64_t budget = budget_[size_t(t)];
  if (budget > 0 && tc.current + bytes > budget)
    FAIL("out of ", tier_name(t), " memory: tag '", tag_name(g), "' asked for ", bytes, " bytes (",
         format_bytes(bytes), ") with ", tc.current, " in use of a ", budget, "-byte (", format_bytes(budget),
         ") budget");
  tc.current += bytes;
  tc.peak = std::max(tc.peak, tc.current);
  auto& gc = tags_[size_t(t)][size_t(g)];
  gc.current += bytes;
  gc.peak = std::max(gc.peak, gc.current);
}

void MemoryTracker::on_free(Tier t, Tag g, int64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  tiers_[size_t(t)].current -= bytes;
  tags_[size_t(t)][size_t(g)].current -= bytes;
}

MemoryTracker::Counter MemoryTracker::tier(Tier t) const {
  std::lock_guard<std::mutex> lk(mu_);
  return tiers_[size_t(t)];
}

MemoryTracker::Counter MemoryTracker::tag(Tier t, Tag g) const {
  std::lock_guard<std::mutex> lk(mu_);
  return tags_[size_t(t)][size_t(g)];
}

void MemoryTracker::reset_peaks() {
  std::lock_guard<std::mutex> lk(mu_);
  for (int t = 0; t < kNumTiers; t++) {
    tiers_[size_t(t)].peak = tiers_[size_t(t)].current;
    for (auto& c : tags_[size_t(t)]) c.peak = c.current;
  }
}

void Allocator::zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }
void Allocator::copy(void* dst, const void* src, size_t n) {
  if (dst != src) std::memmove(dst, src, n);
}

namespace {

class HostAllocator : public Allocator {
 public:
  void* raw_alloc(size_t bytes) override {
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
    CHECK(p, "host allocation of ", bytes, " bytes failed");
    return p;
  }
  void raw_free(void* p, size_t) override { std::free(p); }
};

// The disk tier has no Buffers: offload writes and reads a DiskFile (core/disk_file.h) through host pages.
class NoDiskAllocator : public Allocator {
 public:
  void* raw_alloc(size_t bytes) override {
    FAIL("a ", bytes,
         "-byte buffer on the disk tier: the disk tier is a DiskFile (pwrite/pread), not memory");
  }
  void raw_free(void*, size_t) override {}
  bool host_accessible() const override { return false; }
};

class OpaqueHostAllocator : public HostAllocator {
 public:
  bool host_accessible() const override { return false; }
};

}  // namespace

std::unique_ptr<Allocator> make_host_allocator() { return std::make_unique<HostAllocator>(); }
std::unique_ptr<Allocator> make_opaque_host_allocator() { return std::make_unique<OpaqueHostAllocator>(); }

Memory::Memory() {
  alloc_[size_t(Tier::device)] = make_host_allocator();
  alloc_[size_t(Tier::host)] = make_host_allocator();
  alloc_[size_t(Tier::disk)] = std::make_unique<NoDiskAllocator>();
}
Memory::~Memory() = default;

void Memory::set_allocator(Tier t, std::unique_ptr<Allocator> a) { alloc_[size_t(t)] = std::move(a); }

void* Memory::alloc(Tier t, Tag g, size_t bytes) {
  tracker_.on_alloc(t, g, int64_t(bytes));
  try {
    return alloc_[size_t(t)]->raw_alloc(bytes);
  } catch (...) {
    tracker_.on_free(t, g, int64_t(bytes));
    throw;
  }
}

void Memory::free(Tier t, Tag g, void* p, size_t bytes) {
  if (!p) return;
  alloc_[size_t(t)]->raw_free(p, bytes);
  tracker_.on_free(t, g, int64_t(bytes));
}

Buffer::Buffer(Memory& mem, Tier tier, Tag tag, Shape shape, DType dtype)
    : mem_(&mem), tag_(tag), bytes_(size_t(shape.numel()) * dtype_size(dtype)) {
  t_ = Tensor(mem.alloc(tier, tag, bytes_), shape, dtype, tier);
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    mem_ = o.mem_;
    tag_ = o.tag_;
    bytes_ = o.bytes_;
    t_ = o.t_;
    o.mem_ = nullptr;
    o.t_ = Tensor();
    o.bytes_ = 0;
  }
  return *this;
}

void Buffer::reset() {
  if (mem_ && t_.ptr) mem_->free(t_.tier, tag_, t_.ptr, bytes_);
  mem_ = nullptr;
  t_ = Tensor();
  bytes_ = 0;
}

void Memory::copy(Tier to, void* dst, Tier from, const void* src, size_t n) {
  if (n == 0) return;
  (alloc_[size_t(to)]->host_accessible() ? alloc_[size_t(from)] : alloc_[size_t(to)])->copy(dst, src, n);
}

std::shared_ptr<void> Memory::fence() {
  Allocator* a = alloc_[size_t(Tier::device)].get();
  return std::shared_ptr<void>(a->fence(), [a](void* f) {
    if (f) a->release_fence(f);
  });
}

void Memory::copy_after(Tier to, void* dst, Tier from, const void* src, size_t n,
                        const std::shared_ptr<void>& f) {
  if (n == 0) return;
  (alloc_[size_t(to)]->host_accessible() ? alloc_[size_t(from)] : alloc_[size_t(to)])
      ->copy_after(dst, src, n, f.get());
}

void Memory::zero(Tier t, void* p, size_t bytes) {
  if (p && bytes) alloc_[size_t(t)]->zero(p, bytes);
}

void Buffer::zero() {
  if (t_.ptr) mem_->zero(t_.tier, t_.ptr, t_.bytes());
}

}  // namespace longctx
