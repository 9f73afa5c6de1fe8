// Element types and their sizes.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace longctx {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, U16, U32, U8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "F32", "BF16", ... (safetensors spelling)

// bf16 <-> fp32 with round-to-nearest-even; NaN stays NaN.
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace longctx
