#include "core/disk_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>

namespace longctx {

namespace {

// The offload directory is made on first use when it does not exist yet (as
// out_dir is). One that goes away later in the run is an error, not a new
// directory on whatever disk its path lands on now (an unmounted scratch disk
// would otherwise fill the root file system).
void ensure_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  static std::mutex mu;
  static std::set<std::string> seen;  // directories this process has used
  std::lock_guard<std::mutex> lock(mu);
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    seen.insert(dir);
    return;
  }
  CHECK(!seen.count(dir), "offload: --offload-dir '", dir,
        "' was there earlier in this run and is gone now (removed, or its disk unmounted)");
  CHECK(!fs::exists(dir, ec), "offload: --offload-dir '", dir, "' is not a directory");
  fs::create_directories(dir, ec);
  CHECK(!ec, "offload: cannot create --offload-dir '", dir, "': ", ec.message());
  seen.insert(dir);
}

// The file's blocks, taken now: a disk without room for the plan fails here,
// before the first step, not halfway through a step with ENOSPC. Where the
// file system cannot allocate ahead (EOPNOTSUPP), the file is only sized.
int reserve(int fd, int64_t bytes) {
  if (bytes > 0 && ::fallocate(fd, 0, 0, off_t(bytes)) == 0) return 0;
  if (bytes > 0 && errno != EOPNOTSUPP && errno != ENOSYS) return errno;
  return ::ftruncate(fd, off_t(bytes)) == 0 ? 0 : errno;
}

}  // namespace

DiskFile::DiskFile(const std::string& dir, int64_t bytes, Memory& mem, Tag tag)
    : dir_(dir.empty() ? std::filesystem::temp_directory_path().string() : dir),
      bytes_(bytes),
      mem_(mem),
      tag_(tag) {
  ensure_dir(dir_);
  std::string path = dir_ + "/longctx-offload-XXXXXX";
  fd_ = ::mkstemp(path.data());
  CHECK(fd_ >= 0, "offload: cannot create a file in '", dir_, "': ", std::strerror(errno));
  ::unlink(path.c_str());  // gone with the process, even after a crash
  if (const int e = reserve(fd_, bytes_)) {
    ::close(fd_);
    FAIL("offload: cannot reserve ", bytes_, " bytes (", format_bytes(bytes_), ") for a file in '", dir_,
         "': ", std::strerror(e));
  }
  mem_.tracker().on_alloc(Tier::disk, tag_, bytes_);
}

DiskFile::~DiskFile() {
  if (map_) ::munmap(map_, size_t(bytes_));
  ::close(fd_);
  mem_.tracker().on_free(Tier::disk, tag_, bytes_);
}

const void* DiskFile::mapped() const {
  if (!map_ && bytes_ > 0) {
    void* p = ::mmap(nullptr, size_t(bytes_), PROT_READ, MAP_SHARED, fd_, 0);
    CHECK(p != MAP_FAILED, "offload: cannot map a ", bytes_, "-byte file in '", dir_,
          "': ", std::strerror(errno));
    map_ = p;
  }
  return map_;
}

void DiskFile::write(int64_t off, const void* src, int64_t n) {
  CHECK(off >= 0 && off + n <= bytes_, "offload: write of ", n, " bytes at ", off, " past a ", bytes_,
        "-byte file");
  const char* p = static_cast<const char*>(src);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, size_t(n), off);
    CHECK(w > 0 || errno == EINTR, "offload: writing ", n, " bytes at offset ", off, " in '", dir_,
          "' failed: ", std::strerror(errno));
    if (w > 0) p += w, n -= w, off += w;
  }
}

void DiskFile::read(int64_t off, void* dst, int64_t n) const {
  CHECK(off >= 0 && off + n <= bytes_, "offload: read of ", n, " bytes at ", off, " past a ", bytes_,
        "-byte file");
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, p, size_t(n), off);
    CHECK(r > 0 || errno == EINTR, "offload: reading ", n, " bytes at offset ", off, " in '", dir_,
          "' failed: ", r == 0 ? "unexpected end of file" : std::strerror(errno));
    if (r > 0) p += r, n -= r, off += r;
  }
}

void DiskFile::zero() {  // dropping the blocks and taking them again reads as zeros, without writing any
  const int e = ::ftruncate(fd_, 0) == 0 ? reserve(fd_, bytes_) : errno;
  CHECK(e == 0, "offload: cannot clear a file in '", dir_, "': ", std::strerror(e));
}

}  // namespace longctx
