// safetensors read/write. Layout: u64 LE header length N, N bytes of JSON
// (name -> {dtype, shape, data_offsets} plus optional "__metadata__"), then
// the data section. Headers are validated strictly on open so that a bad file
// fails with one clear line instead of garbage weights; data is read with
// pread, never by slurping the file.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace longctx {

struct SafeTensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the data section
};

// One .safetensors file. Keeps the file open for reads; copies share it.
class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(const std::string& path);
  const std::string& path() const { return path_; }
  const std::vector<SafeTensorInfo>& tensors() const { return tensors_; }  // in data-offset order
  const SafeTensorInfo* find(const std::string& name) const;               // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Converts F32/BF16/F16 to fp32 into dst (numel floats). The stored shape must
  // equal `expected` exactly; non-float dtypes are refused.
  void read_f32(const std::string& name, float* dst, const Shape& expected) const;

 private:
  std::string path_;
  std::shared_ptr<int> fd_;  // closes on last copy
  uint64_t data_start_ = 0;  // 8 + header length
  std::vector<SafeTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A model: a directory with model.safetensors or model.safetensors.index.json
// plus its shards, or a single *.safetensors file.
class SafeTensorsDir {
 public:
  explicit SafeTensorsDir(const std::string& dir_or_file);
  std::vector<std::string> names() const;  // every tensor across shards, sorted
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  Shape shape(const std::string& name) const;
  void read_f32(const std::string& name, float* dst, const Shape& expected) const;

 private:
  const SafeTensorsFile& file_of(const std::string& name) const;
  void load_index(const std::string& dir, const std::string& index_path);
  std::string source_;  // what the user passed, for messages
  std::vector<SafeTensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

struct NamedTensor {
  std::string name;
  Tensor t;  // F32 host memory
};
enum class SaveDType { F32, BF16 };

// Writes to path + ".tmp", fsyncs, renames, so a crash never leaves a torn
// file under `path`. Tensors are laid out in the order given; names must be unique.
void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      SaveDType dtype = SaveDType::F32,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// model-0000i-of-0000N.safetensors of at most max_shard_bytes of tensor data each
// (a larger single tensor gets its own shard) plus model.safetensors.index.json.
void save_safetensors_sharded(const std::string& dir, const std::vector<NamedTensor>& tensors,
                              int64_t max_shard_bytes, SaveDType dtype = SaveDType::F32);

}  // namespace longctx
