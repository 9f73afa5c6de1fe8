#include "io/npy.h"

#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "core/check.h"

namespace longctx {

static_assert(std::endian::native == std::endian::little, "npy I/O assumes a little-endian host");

namespace {

#define NPY_FAIL(path, ...) FAIL("npy ", path, ": ", __VA_ARGS__)

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kChunkElems = size_t(1) << 20;
constexpr uint32_t kMaxHeaderBytes = 1 << 24;  // numpy headers are ~100 bytes; larger means corruption

// The header text for an error message: one line, bounded length.
std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 160)) out += std::isprint(static_cast<unsigned char>(c)) ? c : ' ';
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out + (s.size() > 160 ? "..." : "");
}

// A value of the header dict: numpy writes only strings, booleans and int tuples.
struct PyValue {
  enum Kind { kStr, kBool, kTuple } kind = kStr;
  std::string str;
  bool flag = false;
  std::vector<int64_t> ints;
};

// Recursive-descent reader for the Python dict literal numpy writes, e.g.
// {'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }
class HeaderParser {
 public:
  HeaderParser(const std::string& path, const std::string& text) : path_(path), s_(text) {}

  std::map<std::string, PyValue> dict() {
    expect('{');
    std::map<std::string, PyValue> out;
    while (!peek('}')) {
      const std::string key = string_lit();
      expect(':');
      if (!out.emplace(key, value()).second) bad("duplicate key '" + key + "'");
      if (!peek('}')) expect(',');
    }
    expect('}');
    skip_ws();
    if (i_ != s_.size()) bad("trailing characters after the dict");
    return out;
  }

 private:
  [[noreturn]] void bad(const std::string& what) {
    NPY_FAIL(path_, "malformed header dict: ", what, " at column ", i_, " in: ", one_line(s_));
  }
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) i_++;
  }
  bool peek(char c) {
    skip_ws();
    return i_ < s_.size() && s_[i_] == c;
  }
  void expect(char c) {
    if (!peek(c)) bad(std::string("expected '") + c + "'");
    i_++;
  }
  bool word(const char* w) {
    skip_ws();
    const size_t n = std::strlen(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }
  std::string string_lit() {
    skip_ws();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) bad("expected a quoted string");
    const char q = s_[i_++];
    const size_t end = s_.find(q, i_);
    if (end == std::string::npos) bad("unterminated string");
    std::string out = s_.substr(i_, end - i_);
    i_ = end + 1;
    return out;
  }
  int64_t integer() {
    skip_ws();
    const size_t start = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) i_++;
    if (i_ == start || i_ - start > 18) bad("expected a non-negative integer");
    while (i_ < s_.size() && s_[i_] == 'L') i_++;  // Python 2 long suffix
    return std::stoll(s_.substr(start, i_ - start));
  }
  PyValue value() {
    PyValue v;
    if (peek('\'') || peek('"'))
      v.str = string_lit();
    else if (word("True"))
      v.kind = PyValue::kBool, v.flag = true;
    else if (word("False"))
      v.kind = PyValue::kBool;
    else if (peek('('))
      v.kind = PyValue::kTuple, v.ints = tuple();
    else
      bad("unexpected value");
    return v;
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> out;
    while (!peek(')')) {
      out.push_back(integer());
      if (!peek(')')) expect(',');
    }
    expect(')');
    return out;
  }

  const std::string& path_;
  const std::string& s_;
  size_t i_ = 0;
};

struct IntType {
  bool is_signed = true;
  size_t size = 4;
};

IntType parse_descr(const std::string& path, const std::string& d) {
  if (d.size() < 3) NPY_FAIL(path, "unsupported dtype '", d, "'");
  const char order = d[0], kind = d[1];
  const std::string size = d.substr(2);
  if (kind != 'i' && kind != 'u') NPY_FAIL(path, "non-integer dtype '", d, "'; token ids must be integers");
  IntType t{kind == 'i', 0};
  if (size == "1" || size == "2" || size == "4" || size == "8")
    t.size = size_t(std::stoi(size));
  else
    NPY_FAIL(path, "unsupported integer dtype '", d, "'");
  if (order == '>' && t.size > 1) NPY_FAIL(path, "big-endian dtype '", d, "' is not supported");
  if (order != '<' && order != '|' && order != '=' && order != '>')
    NPY_FAIL(path, "unsupported byte order in dtype '", d, "'");
  return t;
}

int64_t load_int(const unsigned char* p, const IntType& t) {
  switch (t.size) {
    case 1: return t.is_signed ? int64_t(int8_t(p[0])) : int64_t(p[0]);
    case 2: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return t.is_signed ? int64_t(int16_t(v)) : int64_t(v);
    }
    case 4: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return t.is_signed ? int64_t(int32_t(v)) : int64_t(v);
    }
    default: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      if (!t.is_signed && v > uint64_t(std::numeric_limits<int64_t>::max()))
        return std::numeric_limits<int64_t>::max();  // out of int32 range either way
      return int64_t(v);
    }
  }
}

struct NpyHeader {
  IntType type;
  std::vector<int64_t> shape;
  uint64_t data_offset = 0;
};

NpyHeader read_header(const std::string& path, std::ifstream& in, uint64_t file_size) {
  unsigned char pre[8];
  in.read(reinterpret_cast<char*>(pre), 8);
  if (in.gcount() != 8 || std::memcmp(pre, kMagic, 6) != 0) NPY_FAIL(path, "bad magic, not a .npy file");
  const int major = pre[6], minor = pre[7];
  if ((major < 1 || major > 3) || minor != 0)
    NPY_FAIL(path, "unsupported .npy format version ", major, ".", minor);
  const size_t len_bytes = major == 1 ? 2 : 4;
  uint32_t hlen = 0;  // little-endian on disk and on the host: the low bytes land first
  in.read(reinterpret_cast<char*>(&hlen), std::streamsize(len_bytes));
  if (size_t(in.gcount()) != len_bytes) NPY_FAIL(path, "file truncated in the header length");
  if (hlen > kMaxHeaderBytes) NPY_FAIL(path, "header length ", hlen, " is absurd");
  if (8 + len_bytes + uint64_t(hlen) > file_size)
    NPY_FAIL(path, "header length ", hlen, " exceeds the file size ", file_size, " (truncated)");
  std::string text(hlen, '\0');
  in.read(text.data(), std::streamsize(hlen));
  if (size_t(in.gcount()) != hlen) NPY_FAIL(path, "file truncated in the header (", hlen, " bytes expected)");

  const auto dict = HeaderParser(path, text).dict();
  auto get = [&](const char* key, PyValue::Kind kind) -> const PyValue& {
    auto it = dict.find(key);
    if (it == dict.end()) NPY_FAIL(path, "malformed header dict: missing '", key, "'");
    if (it->second.kind != kind) NPY_FAIL(path, "malformed header dict: '", key, "' has the wrong type");
    return it->second;
  };
  NpyHeader h;
  h.type = parse_descr(path, get("descr", PyValue::kStr).str);
  if (get("fortran_order", PyValue::kBool).flag)
    NPY_FAIL(path, "fortran_order True is not supported; save a C-order array");
  h.shape = get("shape", PyValue::kTuple).ints;
  if (h.shape.empty() || h.shape.size() > 2)
    NPY_FAIL(path, "expected 1 or 2 dims, got ", h.shape.size(), " dims");
  h.data_offset = 6 + 2 + len_bytes + hlen;
  return h;
}

}  // namespace

TokenArray load_tokens_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) NPY_FAIL(path, "cannot open (", std::strerror(errno), ")");
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) NPY_FAIL(path, "cannot read the file size (", ec.message(), ")");
  const NpyHeader h = read_header(path, in, file_size);
  TokenArray out;
  out.rows = h.shape.size() == 2 ? h.shape[0] : 1;
  out.cols = h.shape.back();
  uint64_t numel = 0;
  if (__builtin_mul_overflow(uint64_t(out.rows), uint64_t(out.cols), &numel) ||
      numel > uint64_t(std::numeric_limits<int64_t>::max()) / 8)
    NPY_FAIL(path, "shape too large");
  const uint64_t need = numel * h.type.size;
  if (file_size < h.data_offset + need)
    NPY_FAIL(path, "data truncated: shape needs ", need, " bytes, file has ",
             file_size > h.data_offset ? file_size - h.data_offset : 0);

  out.ids.resize(size_t(numel));
  std::vector<unsigned char> buf(std::min<size_t>(size_t(numel), kChunkElems) * h.type.size);
  in.seekg(std::streamoff(h.data_offset), std::ios::beg);
  for (size_t i = 0; i < numel; i += kChunkElems) {
    const size_t k = std::min<size_t>(kChunkElems, size_t(numel) - i);
    in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(k * h.type.size));
    if (size_t(in.gcount()) != k * h.type.size) NPY_FAIL(path, "read failed at element ", i);
    for (size_t j = 0; j < k; j++) {
      const int64_t v = load_int(buf.data() + j * h.type.size, h.type);
      if (v < 0) NPY_FAIL(path, "negative value ", v, " at index ", i + j);
      if (v > std::numeric_limits<int32_t>::max())
        NPY_FAIL(path, "value ", v, " at index ", i + j, " does not fit int32");
      out.ids[i + j] = int32_t(v);
    }
  }
  return out;
}

namespace {

void save_npy(const std::string& path, const std::vector<int64_t>& shape, const void* data, const char* descr,
              size_t elem) {
  int64_t numel = 1;
  std::string dims;  // Python tuple repr: "(3,)", "(3, 4)"
  for (size_t i = 0; i < shape.size(); i++) {
    CHECK(shape[i] >= 0, "npy ", path, ": negative dim ", shape[i]);
    numel *= shape[i];
    dims += (i ? ", " : "") + std::to_string(shape[i]);
  }
  if (shape.size() == 1) dims += ",";
  std::string header =
      std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // numpy pads so the data starts 64-byte aligned, ending the header with '\n'.
  const bool v2 = header.size() + 1 + 10 > 65535;
  const size_t pre = v2 ? 12 : 10;
  header.append((64 - (pre + header.size() + 1) % 64) % 64, ' ');
  header += '\n';

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) NPY_FAIL(tmp, "cannot create (", std::strerror(errno), ")");
    out.write(kMagic, 6);
    const char ver[2] = {char(v2 ? 2 : 1), 0};
    out.write(ver, 2);
    const uint32_t hlen = uint32_t(header.size());
    out.write(reinterpret_cast<const char*>(&hlen), v2 ? 4 : 2);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(static_cast<const char*>(data), std::streamsize(size_t(numel) * elem));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      NPY_FAIL(tmp, "write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    NPY_FAIL(path, "rename failed (", std::strerror(errno), ")");
}

}  // namespace

void save_npy_i32(const std::string& path, const std::vector<int64_t>& shape, const int32_t* data) {
  save_npy(path, shape, data, "<i4", 4);
}

void save_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  save_npy(path, shape, data, "<f4", 4);
}

}  // namespace longctx
