// StagedComm: collectives on device buffers over a Comm that takes host pointers (MPI). Each float buffer
// goes through pinned staging buffers in the host tier (tagged comm, so plans and peaks see them), copied
// by the device allocator; host scalars (double, int32) pass straight through. Staging buffers are kept and
// reused; an elementwise sum is staged a slice at a time, so a whole model's gradients never need a second
// copy in host memory. (The other collectives stage their whole buffer: a ZeRO unit's, a ring block's, an
// all-to-all's; these pinned buffers are not counted by plan yet.)
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "comm/comm.h"
#include "core/check.h"
#include "core/memory.h"

namespace longctx {

namespace {

class StagedComm : public Comm {
 public:
  StagedComm(Comm& inner, std::unique_ptr<Comm> owned, Memory& mem, int64_t slice)
      : inner_(inner), owned_(std::move(owned)), mem_(mem), slice_(slice) {}
  ~StagedComm() override = default;
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const char* kind() const override { return "mpi-staged"; }

  void all_reduce_sum(float* b, int64_t n) override {
    for (int64_t lo = 0; lo < n; lo += slice_) {  // elementwise: any slice is a whole collective
      const int64_t len = std::min(slice_, n - lo);
      Buffer h = take(len);
      in(h.f32(), b + lo, len);
      inner_.all_reduce_sum(h.f32(), len);
      out(b + lo, h.f32(), len);
      give(std::move(h));
    }
  }
  void all_reduce_sum(double* b, int64_t n) override { inner_.all_reduce_sum(b, n); }
  void all_reduce_max(double* b, int64_t n) override { inner_.all_reduce_max(b, n); }
  void all_to_all(const float* s, float* r, int64_t n) override {
    const int64_t all = n * size();
    Buffer hs = take(all), hr = take(all);
    in(hs.f32(), s, all);
    inner_.all_to_all(hs.f32(), hr.f32(), n);
    out(r, hr.f32(), all);
    give(std::move(hs)), give(std::move(hr));
  }
  void all_gather(const float* s, float* r, int64_t n) override {
    Buffer hs = take(n), hr = take(n * size());
    in(hs.f32(), s, n);
    inner_.all_gather(hs.f32(), hr.f32(), n);
    out(r, hr.f32(), n * size());
    give(std::move(hs)), give(std::move(hr));
  }
  void all_gather(const double* s, double* r, int64_t n) override { inner_.all_gather(s, r, n); }
  void all_gather(const int32_t* s, int32_t* r, int64_t n) override { inner_.all_gather(s, r, n); }
  void exchange_start(const float* s, int dst, float* r, int src, int64_t n) override {
    Pending p{r, take(n), take(n), n};
    in(p.send.f32(), s, n);
    inner_.exchange_start(p.send.f32(), dst, p.recv.f32(), src, n);
    pending_.push_back(std::move(p));
  }
  void exchange_wait() override {
    inner_.exchange_wait();
    for (Pending& p : pending_) {
      out(p.dst, p.recv.f32(), p.n);
      give(std::move(p.send)), give(std::move(p.recv));
    }
    pending_.clear();
  }
  void reduce_scatter_sum(float* b, int64_t n) override {  // only this rank's part comes back
    Buffer h = take(n);
    in(h.f32(), b, n);
    inner_.reduce_scatter_sum(h.f32(), n);
    const CommPart q = comm_part(n, size(), rank());
    out(b + q.lo, h.f32() + q.lo, q.n);
    give(std::move(h));
  }
  void all_gather_parts(float* b, int64_t n) override {  // only this rank's part goes out
    Buffer h = take(n);
    const CommPart q = comm_part(n, size(), rank());
    in(h.f32() + q.lo, b + q.lo, q.n);
    inner_.all_gather_parts(h.f32(), n);
    out(b, h.f32(), n);
    give(std::move(h));
  }
  void barrier() override { inner_.barrier(); }
  std::unique_ptr<Comm> split(int color, int key) override {
    std::unique_ptr<Comm> sub = inner_.split(color, key);
    Comm& ref = *sub;
    return std::make_unique<StagedComm>(ref, std::move(sub), mem_, slice_);
  }
  [[noreturn]] void abort(const std::string& why) override {
    inner_.abort(why);
    std::_Exit(1);  // (inner_ never returns)
  }

 private:
  struct Pending {
    float* dst;
    Buffer send, recv;
    int64_t n;
  };
  // a staging buffer of at least n floats: the smallest kept one that fits, else a new one
  Buffer take(int64_t n) {
    size_t best = free_.size();
    for (size_t i = 0; i < free_.size(); i++)
      if (free_[i].t().numel() >= n &&
          (best == free_.size() || free_[i].t().numel() < free_[best].t().numel()))
        best = i;
    if (best == free_.size()) return Buffer(mem_, Tier::host, Tag::comm, {std::max<int64_t>(n, 1)});
    Buffer b = std::move(free_[best]);
    free_.erase(free_.begin() + std::ptrdiff_t(best));
    return b;
  }
  // kept for the next call (pinning and freeing pinned memory per call would stall the device)
  void give(Buffer b) { free_.push_back(std::move(b)); }
  void in(float* host, const float* dev, int64_t n) {
    mem_.copy(Tier::host, host, Tier::device, dev, size_t(n) * sizeof(float));
  }
  void out(float* dev, const float* host, int64_t n) {
    mem_.copy(Tier::device, dev, Tier::host, host, size_t(n) * sizeof(float));
  }

  Comm& inner_;
  std::unique_ptr<Comm> owned_;
  Memory& mem_;
  int64_t slice_;
  std::vector<Buffer> free_;
  std::vector<Pending> pending_;
};

}  // namespace

std::unique_ptr<Comm> make_staged_comm(Comm& inner, Memory& mem, int64_t slice) {
  CHECK(slice > 0, "staged comm: slice of ", slice, " floats");
  return std::make_unique<StagedComm>(inner, nullptr, mem, slice);
}

}  // namespace longctx
