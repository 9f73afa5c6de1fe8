#include "io/token_shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/check.h"

namespace longctx {

static_assert(std::endian::native == std::endian::little, "token shards assume a little-endian host");

namespace {

#define SHARD_FAIL(path, ...) FAIL("token shard ", path, ": ", __VA_ARGS__)

constexpr int64_t kHeaderBytes = kShardHeaderInts * 4;

// Bytes per token for a (magic, version) pair; 0 when the version is unknown.
int elem_bytes_for(int32_t magic, int32_t version) {
  if (magic == kShardMagic) return version == 1 ? 2 : version == 2 ? 4 : 0;
  return version == 7 ? 4 : 0;  // kShardMagicLlama3
}

// Closes the descriptor on every path out of the constructor, error or not.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

TokenShard::TokenShard(const std::string& path) : path_(path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) SHARD_FAIL(path, "cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) SHARD_FAIL(path, "cannot stat (", std::strerror(errno), ")");
  const int64_t file_bytes = st.st_size;
  if (file_bytes < kHeaderBytes)
    SHARD_FAIL(path, "file is ", file_bytes, " bytes, shorter than the ", kHeaderBytes, "-byte header");
  int32_t header[kShardHeaderInts];
  if (::pread(f.fd, header, kHeaderBytes, 0) != kHeaderBytes)
    SHARD_FAIL(path, "cannot read the header (", std::strerror(errno), ")");

  const int32_t magic = header[0];
  if (magic != kShardMagic && magic != kShardMagicLlama3)
    SHARD_FAIL(path, "bad magic ", magic, " (want ", kShardMagic, "), not a token shard");
  version_ = header[1];
  elem_ = elem_bytes_for(magic, version_);
  if (elem_ == 0) SHARD_FAIL(path, "unsupported version ", version_, " (want 1: uint16 tokens or 2: uint32)");
  count_ = header[2];
  if (count_ < 0) SHARD_FAIL(path, "negative token count ", count_, " in the header");
  const int64_t want = kHeaderBytes + count_ * elem_;
  if (file_bytes != want)
    SHARD_FAIL(path, "file is ", file_bytes, " bytes but the header's count of ", count_, " uint", elem_ * 8,
               " tokens needs ", want, (file_bytes < want ? " (truncated)" : " (trailing bytes)"));

  map_bytes_ = size_t(file_bytes);
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    SHARD_FAIL(path, "mmap failed (", std::strerror(errno), ")");
  }
  // Training reads a shard front to back; let the kernel read ahead.
  ::madvise(map_, map_bytes_, MADV_SEQUENTIAL);
}

TokenShard::~TokenShard() {
  if (map_) ::munmap(map_, map_bytes_);
}

void TokenShard::read(int64_t start, int64_t n, int32_t* out) const {
  CHECK(start >= 0 && n >= 0 && start + n <= count_, "token shard ", path_, ": read of ", n, " tokens at ",
        start, " outside its ", count_, " tokens");
  if (n == 0) return;  // out may be null (an empty vector's data()): memcpy must not see it
  const char* base = static_cast<const char*>(map_) + kHeaderBytes;
  if (elem_ == 2) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(base) + start;
    for (int64_t i = 0; i < n; i++) out[i] = p[i];
  } else {
    std::memcpy(out, base + start * 4, size_t(n) * 4);  // uint32 -> int32 bit pattern
  }
}

void write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int version) {
  if (version != 1 && version != 2) SHARD_FAIL(path, "cannot write version ", version, " (1 or 2)");
  if (tokens.size() > size_t(std::numeric_limits<int32_t>::max()))
    SHARD_FAIL(path, tokens.size(), " tokens do not fit the int32 count of the header");
  const int32_t max_id = version == 1 ? 65535 : std::numeric_limits<int32_t>::max();
  for (size_t i = 0; i < tokens.size(); i++)
    if (tokens[i] < 0 || tokens[i] > max_id)
      SHARD_FAIL(path, "token ", tokens[i], " at offset ", i, " does not fit version ", version, " (0..",
                 max_id, ")");

  int32_t header[kShardHeaderInts] = {kShardMagic, version, int32_t(tokens.size())};
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) SHARD_FAIL(tmp, "cannot create (", std::strerror(errno), ")");
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
    if (version == 1) {
      const std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
      out.write(reinterpret_cast<const char*>(narrow.data()), std::streamsize(narrow.size() * 2));
    } else {
      out.write(reinterpret_cast<const char*>(tokens.data()), std::streamsize(tokens.size() * 4));
    }
    out.flush();
    if (!out) {
      out.close();
      std::remove(tmp.c_str());
      SHARD_FAIL(tmp, "write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    SHARD_FAIL(path, "rename failed (", std::strerror(errno), ")");
}

std::vector<int32_t> read_token_shard(const std::string& path) {
  const TokenShard s(path);
  std::vector<int32_t> out(size_t(s.size()));
  s.read(0, s.size(), out.data());
  return out;
}

}  // namespace longctx
