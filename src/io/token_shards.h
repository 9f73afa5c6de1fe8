// llm.c-style token shards (.bin): a header of 256 little-endian int32
// (magic, version, token count, then zeros) followed by the tokens, uint16
// (version 1) or uint32 (version 2). Shards are memory-mapped, never read
// whole, so a corpus larger than RAM streams from the page cache.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

constexpr int32_t kShardMagic = 20240520;        // llm.c's GPT-2 shards
constexpr int32_t kShardMagicLlama3 = 20240801;  // llm.c's Llama 3 shards: version 7, uint32
constexpr int64_t kShardHeaderInts = 256;

// A validated, read-only view of one shard. Every header or size problem is a
// one-line error naming the file.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return count_; }  // tokens
  int version() const { return version_; }
  int elem_bytes() const { return elem_; }
  // out[i] = token[start + i] for i < n; uint32 values above INT32_MAX come out negative.
  void read(int64_t start, int64_t n, int32_t* out) const;

 private:
  std::string path_;
  int version_ = 0, elem_ = 0;
  int64_t count_ = 0;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
};

// Writes atomically (tmp + rename). Version 1 needs every token in [0, 65535],
// version 2 in [0, INT32_MAX].
void write_token_shard(const std::string& path, const std::vector<int32_t>& tokens, int version);

// The whole shard in memory (tests, tools).
std::vector<int32_t> read_token_shard(const std::string& path);

}  // namespace longctx
