// The disk tier: one unlinked file in a directory (gone with the process,
// even after a crash), written and read in whole ranges with pwrite/pread
// (resumed when short). Its bytes count on the disk tier under its tag. Host
// code moves GPU memory to and from it through pinned staging: pwrite/pread
// reach host memory only.
#pragma once
#include <cstdint>
#include <string>

#include "core/memory.h"

namespace longctx {

class DiskFile {
 public:
  // dir "" : the system's temp directory
  DiskFile(const std::string& dir, int64_t bytes, Memory& mem, Tag tag);
  ~DiskFile();
  DiskFile(const DiskFile&) = delete;
  DiskFile& operator=(const DiskFile&) = delete;
  void write(int64_t off, const void* src, int64_t n);
  void read(int64_t off, void* dst, int64_t n) const;
  void zero();  // every byte reads as zero again
  int64_t bytes() const { return bytes_; }
  // The whole file as read-only host memory (mapped once, kept until the file goes): pages come from the
  // page cache as they are read and cost no process memory, so a checkpoint can read a large store
  // without a copy of it in host memory. Sees every write made before.
  const void* mapped() const;

 private:
  std::string dir_;
  int fd_ = -1;
  int64_t bytes_;
  Memory& mem_;
  Tag tag_;
  mutable void* map_ = nullptr;
};

}  // namespace longctx
