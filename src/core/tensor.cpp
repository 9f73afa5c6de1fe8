#include "core/tensor.h"

#include <sstream>

namespace longctx {

const char* tier_name(Tier t) {
  switch (t) {
    case Tier::device: return "device";
    case Tier::host: return "host";
    case Tier::disk: return "disk";
  }
  return "?";
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  CHECK(dims.size() <= size_t(kMaxDims), "at most ", kMaxDims, " dims");
  for (int64_t v : dims) d[size_t(n++)] = v;
}

int64_t Shape::numel() const {
  int64_t p = 1;
  for (int i = 0; i < n; i++) p *= d[size_t(i)];
  return p;
}

bool Shape::operator==(const Shape& o) const {
  if (n != o.n) return false;
  for (int i = 0; i < n; i++)
    if (d[size_t(i)] != o.d[size_t(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < n; i++) os << (i ? ", " : "") << d[size_t(i)];
  os << ")";
  return os.str();
}

Tensor Tensor::slice0(int64_t start, int64_t len) const {
  CHECK(shape.n >= 1 && start >= 0 && len >= 0 && start + len <= shape[0], "slice [", start, ", ",
        start + len, ") out of ", shape.str());
  Tensor t = *this;
  t.shape.d[0] = len;
  t.ptr = static_cast<char*>(ptr) + size_t(start) * (bytes() / size_t(shape[0] ? shape[0] : 1));
  return t;
}

Tensor Tensor::view(Shape s) const {
  CHECK(s.numel() == numel(), "view ", s.str(), " of ", shape.str());
  Tensor t = *this;
  t.shape = s;
  return t;
}

}  // namespace longctx
