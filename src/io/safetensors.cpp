#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace longctx {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

#define ST_FAIL(path, ...) FAIL("safetensors ", path, ": ", __VA_ARGS__)

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // real headers are KBs; larger means a corrupt length
constexpr uint64_t kMaxIndexBytes = 100'000'000;   // a 405B model's index is ~100 KB
constexpr size_t kChunkElems = size_t(1) << 20;    // conversion staging, 2-4 MB

std::shared_ptr<int> open_fd(const std::string& path, int flags, mode_t mode = 0) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) ST_FAIL(path, "cannot open (", std::strerror(errno), ")");
  return std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
}

void pread_all(int fd, void* dst, size_t n, uint64_t off, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) ST_FAIL(path, "read failed at offset ", off, " (", std::strerror(errno), ")");
    if (r == 0) ST_FAIL(path, "file truncated at offset ", off);
    p += r, n -= size_t(r), off += uint64_t(r);
  }
}

void write_all(int fd, const void* src, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(src);
  while (n > 0) {
    const ssize_t r = ::write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) ST_FAIL(path, "write failed (", std::strerror(errno), ")");
    p += r, n -= size_t(r);
  }
}

// Every dtype name the safetensors spec defines; only those in our DType enum are usable.
bool parse_dtype(const std::string& s, DType* out) {
  static const std::map<std::string, DType> known = {
      {"F32", DType::F32}, {"F64", DType::F64}, {"BF16", DType::BF16},
      {"F16", DType::F16}, {"I32", DType::I32}, {"I64", DType::I64},
      {"U16", DType::U16}, {"U32", DType::U32}, {"U8", DType::U8}};
  auto it = known.find(s);
  if (it == known.end()) return false;
  *out = it->second;
  return true;
}

const char* json_type(const json& j) { return j.type_name(); }

// Parses the header; a duplicate top-level key would otherwise silently win.
json parse_header_json(const std::string& path, const std::string& text) {
  std::set<std::string> seen;
  auto cb = [&](int depth, json::parse_event_t ev, json& j) {
    if (ev == json::parse_event_t::key && depth == 1 && !seen.insert(j.get<std::string>()).second)
      ST_FAIL(path, "duplicate tensor name '", j.get<std::string>(), "' in header");
    return true;
  };
  json h;
  try {
    h = json::parse(text, cb);
  } catch (const json::exception& e) {
    ST_FAIL(path, "header is not valid JSON (", e.what(), ")");
  }
  if (!h.is_object()) ST_FAIL(path, "header is not a JSON object (got ", json_type(h), ")");
  return h;
}

uint64_t get_u64(const std::string& path, const std::string& name, const char* field, const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) ST_FAIL(path, "tensor '", name, "': negative value ", v.dump(), " in ", field);
  ST_FAIL(path, "tensor '", name, "': ", field, " must hold integers, got ", json_type(v));
}

SafeTensorInfo parse_entry(const std::string& path, const std::string& name, const json& e,
                           uint64_t data_size) {
  if (!e.is_object()) ST_FAIL(path, "tensor '", name, "': entry must be an object, got ", json_type(e));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!e.contains(key)) ST_FAIL(path, "tensor '", name, "': missing \"", key, "\"");
  const json &dt = e["dtype"], &sh = e["shape"], &off = e["data_offsets"];
  if (!dt.is_string()) ST_FAIL(path, "tensor '", name, "': dtype must be a string, got ", json_type(dt));
  if (!sh.is_array()) ST_FAIL(path, "tensor '", name, "': shape must be an array, got ", json_type(sh));
  if (!off.is_array() || off.size() != 2)
    ST_FAIL(path, "tensor '", name, "': data_offsets must be an array [begin, end], got ", off.dump());

  SafeTensorInfo t;
  t.name = name;
  if (!parse_dtype(dt.get<std::string>(), &t.dtype))
    ST_FAIL(path, "tensor '", name, "': unsupported dtype '", dt.get<std::string>(), "'");
  if (sh.size() > size_t(Shape::kMaxDims))
    ST_FAIL(path, "tensor '", name, "': ", sh.size(), " dims, at most ", Shape::kMaxDims, " supported");
  uint64_t numel = 1;
  for (const json& d : sh) {
    const uint64_t v = get_u64(path, name, "shape", d);
    if (v > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel))
      ST_FAIL(path, "tensor '", name, "': shape ", sh.dump(), " overflows");
    t.shape.d[size_t(t.shape.n++)] = int64_t(v);
  }
  t.begin = get_u64(path, name, "data_offsets", off[0]);
  t.end = get_u64(path, name, "data_offsets", off[1]);
  if (t.end < t.begin) ST_FAIL(path, "tensor '", name, "': data_offsets end ", t.end, " < begin ", t.begin);
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &bytes) || bytes != t.end - t.begin)
    ST_FAIL(path, "tensor '", name, "': size mismatch, data_offsets span ", t.end - t.begin, " bytes but ",
            dtype_name(t.dtype), " ", t.shape.str(), " needs ", bytes);
  if (t.end > data_size)
    ST_FAIL(path, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end, "] beyond the data section (",
            data_size, " bytes)");
  return t;
}

// The spec requires tensors to tile the data section exactly: no overlap, no hole, nothing after.
void check_layout(const std::string& path, std::vector<SafeTensorInfo>& ts, uint64_t data_size) {
  std::sort(ts.begin(), ts.end(), [](const SafeTensorInfo& a, const SafeTensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const std::string* prev = nullptr;
  for (const SafeTensorInfo& t : ts) {
    if (t.begin < cursor)
      ST_FAIL(path, "tensor '", t.name, "' overlaps '", prev ? *prev : std::string(), "' at offset ",
              t.begin);
    if (t.begin > cursor) ST_FAIL(path, "hole in data section: bytes [", cursor, ", ", t.begin, ") unused");
    cursor = t.end;
    prev = &t.name;
  }
  if (cursor != data_size)
    ST_FAIL(path, "hole in data section: ", data_size - cursor, " trailing bytes after the last tensor");
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& m) {
  if (!m.is_object()) ST_FAIL(path, "__metadata__ must be an object, got ", json_type(m));
  std::map<std::string, std::string> out;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it.value().is_string())
      ST_FAIL(path, "__metadata__ value for '", it.key(), "' must be a string, got ", json_type(it.value()));
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

}  // namespace

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path), fd_(open_fd(path, O_RDONLY)) {
  struct stat st {};
  if (::fstat(*fd_, &st) != 0) ST_FAIL(path, "cannot stat (", std::strerror(errno), ")");
  if (!S_ISREG(st.st_mode)) ST_FAIL(path, "not a regular file");
  const uint64_t file_size = uint64_t(st.st_size);
  if (file_size < 8) ST_FAIL(path, "file too short (", file_size, " bytes) for the 8-byte header length");
  uint64_t n = 0;
  pread_all(*fd_, &n, 8, 0, path);
  if (n > kMaxHeaderBytes) ST_FAIL(path, "header length ", n, " is absurd (limit ", kMaxHeaderBytes, ")");
  if (n > file_size - 8) ST_FAIL(path, "header length ", n, " exceeds the file size ", file_size);
  std::string text(n, '\0');
  pread_all(*fd_, text.data(), n, 8, path);
  data_start_ = 8 + n;
  const uint64_t data_size = file_size - data_start_;

  const json h = parse_header_json(path, text);
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__")
      metadata_ = parse_metadata(path, it.value());
    else
      tensors_.push_back(parse_entry(path, it.key(), it.value(), data_size));
  }
  check_layout(path, tensors_, data_size);
  for (size_t i = 0; i < tensors_.size(); i++) index_[tensors_[i].name] = i;
}

const SafeTensorInfo* SafeTensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafeTensorsFile::read_f32(const std::string& name, float* dst, const Shape& expected) const {
  const SafeTensorInfo* t = find(name);
  if (!t) ST_FAIL(path_, "no tensor named '", name, "'");
  if (t->shape != expected)
    ST_FAIL(path_, "tensor '", name, "' has shape ", t->shape.str(), ", expected ", expected.str());
  const uint64_t off = data_start_ + t->begin;
  const size_t numel = size_t(t->shape.numel());
  if (t->dtype == DType::F32) return pread_all(*fd_, dst, numel * 4, off, path_);
  if (t->dtype != DType::BF16 && t->dtype != DType::F16)
    ST_FAIL(path_, "tensor '", name, "' has non-float dtype ", dtype_name(t->dtype),
            "; only F32, BF16 and F16 can be read as fp32");
  std::vector<uint16_t> buf(std::min(numel, kChunkElems));
  for (size_t i = 0; i < numel; i += buf.size()) {
    const size_t k = std::min(buf.size(), numel - i);
    pread_all(*fd_, buf.data(), k * 2, off + i * 2, path_);
    if (t->dtype == DType::BF16)
      for (size_t j = 0; j < k; j++) dst[i + j] = bf16_to_f32(buf[j]);
    else
      for (size_t j = 0; j < k; j++) dst[i + j] = f16_to_f32(buf[j]);
  }
}

// ---------------------------------------------------------------- directories

SafeTensorsDir::SafeTensorsDir(const std::string& dir_or_file) : source_(dir_or_file) {
  const fs::path p(dir_or_file);
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) {
    files_.emplace_back(dir_or_file);
  } else if (fs::is_directory(p, ec)) {
    const fs::path index = p / "model.safetensors.index.json", single = p / "model.safetensors";
    if (fs::exists(index, ec)) {
      load_index(dir_or_file, index.string());
      return;
    }
    if (!fs::exists(single, ec))
      ST_FAIL(dir_or_file, "directory has neither model.safetensors nor model.safetensors.index.json");
    files_.emplace_back(single.string());
  } else {
    ST_FAIL(dir_or_file, "no such file or directory");
  }
  for (const SafeTensorInfo& t : files_[0].tensors()) where_[t.name] = 0;
}

// A shard named by the index: a plain file name beside the index, as HF
// writes them; a path elsewhere ("../x", "/etc/x", "sub/x") is refused.
static bool plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

void SafeTensorsDir::load_index(const std::string& dir, const std::string& index_path) {
  std::error_code ec;
  const uint64_t size = fs::file_size(index_path, ec);
  if (ec) ST_FAIL(index_path, "cannot read (", ec.message(), ")");
  if (size > kMaxIndexBytes)
    ST_FAIL(index_path, "index is ", size, " bytes, too large (limit ", kMaxIndexBytes, ")");
  std::ifstream in(index_path, std::ios::binary);
  if (!in) ST_FAIL(index_path, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  json idx;
  try {
    idx = json::parse(ss.str());
  } catch (const json::exception& e) {
    ST_FAIL(index_path, "index is not valid JSON (", e.what(), ")");
  }
  if (!idx.is_object()) ST_FAIL(index_path, "index is not a JSON object");
  if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
    ST_FAIL(index_path, "index has no \"weight_map\" object");
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      ST_FAIL(index_path, "weight_map value for '", it.key(), "' must be a string, got ",
              json_type(it.value()));
    const std::string& shard = it.value().get_ref<const std::string&>();
    if (!plain_file_name(shard))
      ST_FAIL(index_path, "weight_map value for '", it.key(), "' is '", shard,
              "'; shards must be plain file names in the index's directory");
    by_shard[shard].push_back(it.key());
  }
  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = (fs::path(dir) / shard).string();
    std::error_code ec;
    if (!fs::is_regular_file(shard_path, ec))
      ST_FAIL(index_path, "shard file '", shard, "' (holding '", names[0], "') is missing");
    files_.emplace_back(shard_path);
    const size_t fi = files_.size() - 1;
    for (const std::string& n : names) {
      if (!files_[fi].find(n))
        ST_FAIL(shard_path, "tensor '", n, "' listed in the index weight_map is absent");
      where_[n] = fi;
    }
    // A tensor the index does not list would be silently dropped from the model.
    for (const SafeTensorInfo& t : files_[fi].tensors())
      if (auto w = where_.find(t.name); w == where_.end() || w->second != fi)
        ST_FAIL(shard_path, "tensor '", t.name, "' is not listed for this shard in ", index_path);
  }
}

std::vector<std::string> SafeTensorsDir::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);  // std::map: already sorted
  return out;
}

const SafeTensorsFile& SafeTensorsDir::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) ST_FAIL(source_, "no tensor named '", name, "'");
  return files_[it->second];
}

Shape SafeTensorsDir::shape(const std::string& name) const { return file_of(name).find(name)->shape; }

void SafeTensorsDir::read_f32(const std::string& name, float* dst, const Shape& expected) const {
  file_of(name).read_f32(name, dst, expected);
}

// ---------------------------------------------------------------- writing

namespace {

size_t elem_size(SaveDType d) { return d == SaveDType::F32 ? 4 : 2; }

void check_tensors(const std::string& path, const std::vector<NamedTensor>& ts) {
  std::set<std::string> seen;
  for (const NamedTensor& t : ts) {
    if (t.name.empty() || t.name == "__metadata__") ST_FAIL(path, "invalid tensor name '", t.name, "'");
    if (!seen.insert(t.name).second) ST_FAIL(path, "duplicate tensor name '", t.name, "'");
    if (t.t.dtype != DType::F32)
      ST_FAIL(path, "tensor '", t.name, "' is ", dtype_name(t.t.dtype), "; only F32 tensors can be saved");
    if (!t.t.ptr && t.t.numel() != 0) ST_FAIL(path, "tensor '", t.name, "' has no data");
    for (int i = 0; i < t.t.shape.n; i++)
      if (t.t.shape[i] < 0) ST_FAIL(path, "tensor '", t.name, "' has negative shape ", t.t.shape.str());
  }
}

// Compact JSON padded with spaces so the data section starts 8-byte aligned.
std::string make_header(const std::string& path, const std::vector<NamedTensor>& ts, SaveDType dtype,
                        const std::map<std::string, std::string>& metadata) {
  ordered_json h = ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const NamedTensor& t : ts) {
    const uint64_t bytes = uint64_t(t.t.numel()) * elem_size(dtype);
    ordered_json shape = ordered_json::array();
    for (int i = 0; i < t.t.shape.n; i++) shape.push_back(t.t.shape[i]);
    h[t.name] = {{"dtype", dtype == SaveDType::F32 ? "F32" : "BF16"},
                 {"shape", shape},
                 {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  std::string s;
  try {
    s = h.dump();
  } catch (const ordered_json::exception& e) {
    ST_FAIL(path, "cannot encode header (", e.what(), ")");
  }
  s.append((8 - (8 + s.size()) % 8) % 8, ' ');
  return s;
}

void write_tensor(int fd, const Tensor& t, SaveDType dtype, const std::string& path) {
  const size_t numel = size_t(t.numel());
  const float* src = static_cast<const float*>(t.ptr);
  if (dtype == SaveDType::F32) return write_all(fd, src, numel * 4, path);
  std::vector<uint16_t> buf(std::min(numel, kChunkElems));
  for (size_t i = 0; i < numel; i += buf.size()) {
    const size_t k = std::min(buf.size(), numel - i);
    for (size_t j = 0; j < k; j++) buf[j] = f32_to_bf16(src[i + j]);
    write_all(fd, buf.data(), k * 2, path);
  }
}

// tmp + fsync + rename + fsync(dir): readers see the old file or the whole new one.
void write_atomic(const std::string& path, const std::function<void(int)>& body) {
  const std::string tmp = path + ".tmp";
  try {
    auto fd = open_fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    body(*fd);
    if (::fsync(*fd) != 0) ST_FAIL(tmp, "fsync failed (", std::strerror(errno), ")");
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    ST_FAIL(path, "rename from ", tmp, " failed (", std::strerror(err), ")");
  }
  std::string dir = fs::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) ::fsync(dfd), ::close(dfd);  // best effort: some filesystems refuse directory fsync
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, SaveDType dtype,
                      const std::map<std::string, std::string>& metadata) {
  check_tensors(path, tensors);
  const std::string header = make_header(path, tensors, dtype, metadata);
  write_atomic(path, [&](int fd) {
    const uint64_t n = header.size();
    write_all(fd, &n, 8, path);
    write_all(fd, header.data(), header.size(), path);
    for (const NamedTensor& t : tensors) write_tensor(fd, t.t, dtype, path);
  });
}

void save_safetensors_sharded(const std::string& dir, const std::vector<NamedTensor>& tensors,
                              int64_t max_shard_bytes, SaveDType dtype) {
  if (max_shard_bytes <= 0) ST_FAIL(dir, "max_shard_bytes must be positive, got ", max_shard_bytes);
  check_tensors(dir, tensors);
  std::vector<std::vector<NamedTensor>> shards(1);
  int64_t cur = 0, total = 0;
  for (const NamedTensor& t : tensors) {
    const int64_t bytes = t.t.numel() * int64_t(elem_size(dtype));
    if (!shards.back().empty() && cur + bytes > max_shard_bytes) shards.emplace_back(), cur = 0;
    shards.back().push_back(t);
    cur += bytes, total += bytes;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) ST_FAIL(dir, "cannot create directory (", ec.message(), ")");

  std::map<std::string, std::string> weight_map;  // sorted, like HF writes it
  for (size_t i = 0; i < shards.size(); i++) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors((fs::path(dir) / name).string(), shards[i], dtype);
    for (const NamedTensor& t : shards[i]) weight_map[t.name] = name;
  }
  ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  write_atomic(index_path, [&](int fd) { write_all(fd, text.data(), text.size(), index_path); });
}

}  // namespace longctx
