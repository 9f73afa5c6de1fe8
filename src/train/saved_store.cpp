#include "train/saved_store.h"

#include "core/check.h"

namespace longctx {

SavedStore::SavedStore(const StepLayout& s, int64_t L, Memory& mem)
    : L_(L), where_(s.offload_sets > 0 ? s.plan.offload : Offload::none), bytes_(s.saved_bytes), mem_(mem) {
  for (int64_t i = 0; i < s.device_sets; i++)
    device_.push_back(std::make_unique<ActBuffer>(s.saved, mem, Tier::device, Tag::checkpoint));
  if (where_ == Offload::none) return;
  ticket_.assign(2, 0);
  copier_ = std::make_unique<CopyThread>();
  if (where_ == Offload::host) {
    for (int64_t i = 0; i < s.offload_sets; i++)
      host_.emplace_back(mem, Tier::host, Tag::checkpoint, Shape{bytes_ / 4});
    return;
  }
  file_ = std::make_unique<DiskFile>(s.plan.offload_dir, s.offload_sets * bytes_, mem, Tag::checkpoint);
  if (!mem.host_accessible(Tier::device))  // pwrite/pread cannot reach GPU memory: a pinned slot each
    for (int i = 0; i < 2; i++) staging_.emplace_back(mem, Tier::host, Tag::checkpoint, Shape{bytes_ / 4});
}

SavedStore::~SavedStore() {
  copier_.reset();  // drains the queue before the file goes
}

const ActBuffer& SavedStore::forward_set(int64_t l) {
  if (where_ == Offload::none) return *device_[size_t(l)];
  copier_->wait(ticket_[size_t(l % 2)]);  // block l-2's set has left this slot
  return *device_[size_t(l % 2)];
}

// (the copies wait for the compute enqueued before them, f, on the copy thread's own stream on a GPU)
void SavedStore::copy_out(int64_t l) {
  const char* src = static_cast<const char*>(device_[size_t(l % 2)]->all().ptr);
  Memory* m = &mem_;
  const std::shared_ptr<void> f = mem_.fence();  // block l's saved state is written
  if (where_ == Offload::host) {
    char* dst = static_cast<char*>(host_[size_t(l)].t().ptr);
    ticket_[size_t(l % 2)] =
        copier_->submit([=, n = bytes_] { m->copy_after(Tier::host, dst, Tier::device, src, size_t(n), f); });
  } else if (!staging_.empty()) {  // GPU memory: through this slot's pinned staging
    char* st = static_cast<char*>(staging_[size_t(l % 2)].t().ptr);
    ticket_[size_t(l % 2)] = copier_->submit([=, file = file_.get(), n = bytes_] {
      m->copy_after(Tier::host, st, Tier::device, src, size_t(n), f);
      file->write(l * n, st, n);
    });
  } else {
    ticket_[size_t(l % 2)] = copier_->submit([=, f = file_.get(), n = bytes_] { f->write(l * n, src, n); });
  }
}

void SavedStore::copy_in(int64_t l) {
  char* dst = static_cast<char*>(device_[size_t(l % 2)]->all().ptr);
  Memory* m = &mem_;
  const std::shared_ptr<void> f = mem_.fence();  // the slot's last reader, block l+2's backward, is done
  if (where_ == Offload::host) {
    const char* src = static_cast<const char*>(host_[size_t(l)].t().ptr);
    ticket_[size_t(l % 2)] =
        copier_->submit([=, n = bytes_] { m->copy_after(Tier::device, dst, Tier::host, src, size_t(n), f); });
  } else if (!staging_.empty()) {
    char* st = static_cast<char*>(staging_[size_t(l % 2)].t().ptr);
    ticket_[size_t(l % 2)] = copier_->submit([=, file = file_.get(), n = bytes_] {
      file->read(l * n, st, n);
      m->copy_after(Tier::device, dst, Tier::host, st, size_t(n), f);
    });
  } else {
    ticket_[size_t(l % 2)] = copier_->submit([=, f = file_.get(), n = bytes_] { f->read(l * n, dst, n); });
  }
}

void SavedStore::forward_done(int64_t l) {
  if (where_ != Offload::none && l + 1 < L_) copy_out(l);
}

const ActBuffer& SavedStore::backward_set(int64_t l) {
  if (where_ == Offload::none) return *device_[size_t(l)];
  if (l + 1 == L_) {
    copier_->wait_all();  // the forward's copies out are done before any slot is reused
  }
  copier_->wait(ticket_[size_t(l % 2)]);  // block l's prefetch (none for the last block)
  if (l >= 1) copy_in(l - 1);             // the other slot held block l+1, finished
  return *device_[size_t(l % 2)];
}

void SavedStore::finish() {
  if (copier_) copier_->wait_all();
}

}  // namespace longctx
