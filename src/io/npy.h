// NumPy .npy files: token id arrays in (the data pipeline's input format) and
// small int32/fp32 arrays out (tests, tools). Format versions 1.0, 2.0, 3.0.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

struct TokenArray {
  int64_t rows = 0, cols = 0;
  std::vector<int32_t> ids;  // (rows, cols), row-major
};

// Loads a 1-D (n) or 2-D (rows, cols) C-order little-endian integer array
// (i1, u1, i2, u2, i4, u4, i8, u8). A 1-D array becomes rows = 1. Every value
// must lie in [0, INT32_MAX]. Errors are one line naming the file.
TokenArray load_tokens_npy(const std::string& path);

// Write atomically (tmp + rename); version 1.0 unless the header needs 2.0.
void save_npy_i32(const std::string& path, const std::vector<int64_t>& shape, const int32_t* data);
void save_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace longctx
