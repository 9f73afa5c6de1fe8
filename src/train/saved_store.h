// What each block saves from its forward for its backward (its input and the
// rows its recompute policy keeps), held on the device, or offloaded to the
// host or disk tier by a copy thread that overlaps with compute: two device
// staging sets ping-pong, block l in set l % 2; forward moves a finished set
// out while the next block computes, backward prefetches one block ahead.
// The last block's set never leaves the device.
#pragma once
#include <memory>
#include <vector>

#include "core/copy_thread.h"
#include "core/disk_file.h"
#include "model/block.h"
#include "strategy/memory_model.h"

namespace longctx {

class SavedStore {
 public:
  SavedStore(const StepLayout& s, int64_t L, Memory& mem);
  ~SavedStore();
  // Forward: the device set block l writes into (waits until it is free).
  const ActBuffer& forward_set(int64_t l);
  // Forward: block l's set is complete; start moving it off the device.
  void forward_done(int64_t l);
  // Backward, blocks in reverse: block l's set on the device (waits for it)
  // and the prefetch of block l-1's set started.
  const ActBuffer& backward_set(int64_t l);
  void finish();  // waits for every copy (end of a pass)

 private:
  void copy_out(int64_t l);
  void copy_in(int64_t l);
  int64_t L_;
  Offload where_;
  int64_t bytes_;
  Memory& mem_;
  std::vector<std::unique_ptr<ActBuffer>> device_;  // L sets, or 2 staging sets
  std::vector<Buffer> host_;                        // offload to host: L-1 sets
  std::unique_ptr<DiskFile> file_;                  // offload to disk: L-1 sets
  std::vector<Buffer> staging_;                     // disk with a GPU device tier: 2 pinned slots
  std::unique_ptr<CopyThread> copier_;
  std::vector<uint64_t> ticket_;  // per staging slot: the copy that must finish before reuse
};

}  // namespace longctx
