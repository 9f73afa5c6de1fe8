// Tensor: a non-owning view (pointer, shape, dtype, tier). Ownership lives in
// Buffer (core/memory.h); views are cheap to copy and pass by value.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/check.h"
#include "core/dtype.h"

namespace longctx {

// Memory tiers: where bytes live. On the CPU backend `device` is emulated
// host memory with its own budget.
enum class Tier : uint8_t { device, host, disk };
constexpr int kNumTiers = 3;
const char* tier_name(Tier t);

struct Shape {
  static constexpr int kMaxDims = 6;
  std::array<int64_t, kMaxDims> d{};
  int n = 0;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  int64_t operator[](int i) const { return d[size_t(i < 0 ? i + n : i)]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "(2, 3, 4)"
};

struct Tensor {
  void* ptr = nullptr;
  Shape shape;
  DType dtype = DType::F32;
  Tier tier = Tier::host;

  Tensor() = default;
  Tensor(void* p, Shape s, DType t = DType::F32, Tier tr = Tier::host)
      : ptr(p), shape(s), dtype(t), tier(tr) {}

  int ndim() const { return shape.n; }
  int64_t dim(int i) const { return shape[i]; }
  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool defined() const { return ptr != nullptr; }

  template <class T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
  float* f32() const {
    CHECK(dtype == DType::F32, "tensor is ", dtype_name(dtype), ", expected F32");
    return static_cast<float*>(ptr);
  }
  int32_t* i32() const {
    CHECK(dtype == DType::I32, "tensor is ", dtype_name(dtype), ", expected I32");
    return static_cast<int32_t*>(ptr);
  }
  // Rows [start, start+len) along dim 0, as a view.
  Tensor slice0(int64_t start, int64_t len) const;
  // Same bytes, another shape with the same element count.
  Tensor view(Shape s) const;
};

}  // namespace longctx
