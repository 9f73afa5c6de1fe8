#include "core/dtype.h"

#include <cmath>

namespace longctx {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64:
    case DType::I64: return 8;
    case DType::F32:
    case DType::I32:
    case DType::U32: return 4;
    case DType::BF16:
    case DType::F16:
    case DType::U16: return 2;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U16: return "U16";
    case DType::U32: return "U32";
    case DType::U8: return "U8";
  }
  return "?";
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(float(man), -24);  // zero / subnormal
  else if (exp == 31)
    v = man ? NAN : INFINITY;  // inf / nan
  else
    v = std::ldexp(float(man | 0x400), int(exp) - 25);  // normal
  return sign ? -v : v;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000;
  const uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return uint16_t(sign | 0x7e00);   // nan
  if (au >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // overflow -> inf
  if (au < 0x33000001u) return uint16_t(sign);            // underflow -> 0
  int e = int(au >> 23) - 127;
  uint32_t man = (au & 0x7fffff) | 0x800000;
  int shift = e < -14 ? (-1 - e) : 13;  // subnormal or normal
  uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1))) r++;
  if (e < -14) return uint16_t(sign | r);
  return uint16_t(sign | ((uint32_t(e + 15) << 10) + (r - 0x400)));
}

}  // namespace longctx
